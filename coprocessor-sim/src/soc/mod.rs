//! A SoC: physical memory and its frame table, DARTs, and the coprocessors
//! (devices) that sit behind them, each owning one stream.

pub mod config;
pub mod coprocessor;

pub use crate::device::Device;

use crate::rpc::service::MapperService;
use config::{CoprocessorConfig, SocConfig};
use coprocessor::Coprocessor;
use dart::{Dart, DartConfig, DartError, EventKind, EventLog, Invalidation, StreamConfig, StreamPort, Variant};
use frame_table::{FrameEvent, FrameObserver, FrameTable, FrameTableConfig};
use std::sync::Arc;

/// Errors building a SoC.
#[derive(Debug, thiserror::Error)]
pub enum SocError {
    /// Physical memory could not be built.
    #[error("physical memory: {0}")]
    Memory(#[from] frame_table::ConfigError),
    /// A DART could not be built or configured.
    #[error("DART `{name}`: {source}")]
    Dart {
        /// The DART's name.
        name: String,
        /// Why.
        source: DartError,
    },
    /// The OS refused a coprocessor's thread.
    #[error("coprocessor `{device}`: cannot start its thread: {source}")]
    Spawn {
        /// The coprocessor.
        device: String,
        /// Why.
        source: std::io::Error,
    },
    /// A coprocessor names a DART that does not exist.
    #[error("coprocessor `{device}` is on unknown DART `{dart}`")]
    UnknownDart {
        /// The coprocessor.
        device: String,
        /// The DART it names.
        dart: String,
    },
}

/// The emulated system.
#[derive(Debug)]
pub struct Soc {
    /// Physical memory and frame types.
    pub frames: Arc<FrameTable>,
    /// The DARTs.
    pub darts: Vec<Arc<Dart>>,
    /// The coprocessors.
    pub devices: Vec<Device>,
    /// The kernel's mapper service.
    pub service: MapperService,
    /// One running coprocessor thread per device, in [`Soc::devices`] order.
    pub coprocessors: Vec<Coprocessor>,
    /// Each device's stream port, in [`Soc::devices`] order: the same
    /// capability its coprocessor thread holds, for DMA issued from other
    /// threads on the device's behalf (a scenario's race threads).
    pub ports: Vec<StreamPort>,
}

impl Soc {
    /// Builds a SoC from scenario sections. Every coprocessor's stream starts
    /// enabled and translating; tables are made on first use.
    pub fn new(
        soc: &SocConfig,
        darts: &[config::DartConfig],
        coprocessors: &[CoprocessorConfig],
    ) -> Result<Soc, SocError> {
        let frames = Arc::new(FrameTable::new(
            FrameTableConfig::with_memory(soc.memory_bytes()).frame_size(soc.page_size).on_violation(soc.on_violation),
        )?);
        let mut built = Vec::new();
        for d in darts {
            let mut cfg = DartConfig::new(d.name.clone(), d.variant);
            cfg.streams = d.streams;
            cfg.invalidation = d.invalidation;
            cfg.iotlb_entries = d.iotlb_entries.min(DartConfig::MAX_IOTLB_ENTRIES as u64) as usize;
            cfg.trusted = coprocessors.iter().filter(|c| c.dart == d.name && c.trusted).map(|c| c.stream).collect();
            let dart =
                Dart::new(frames.clone(), cfg).map_err(|source| SocError::Dart { name: d.name.clone(), source })?;
            built.push(Arc::new(dart));
        }
        let mut devices = Vec::new();
        for c in coprocessors {
            let Some(idx) = darts.iter().position(|d| d.name == c.dart) else {
                return Err(SocError::UnknownDart { device: c.name.clone(), dart: c.dart.clone() });
            };
            built[idx]
                .set_stream_config(c.stream, StreamConfig::TRANSLATING)
                .map_err(|source| SocError::Dart { name: c.dart.clone(), source })?;
            devices.push(Device {
                name: c.name.clone(),
                dart: idx,
                stream: c.stream,
                trusted: c.trusted,
                window: c.window.clone(),
            });
        }
        let service = MapperService::new(frames.clone(), built.clone(), devices.clone());
        let mut coprocessors = Vec::with_capacity(devices.len());
        let mut ports = Vec::with_capacity(devices.len());
        for d in &devices {
            let port = built[d.dart]
                .port(d.stream)
                .map_err(|source| SocError::Dart { name: darts[d.dart].name.clone(), source })?;
            let cop = Coprocessor::spawn(d.name.clone(), port.clone())
                .map_err(|source| SocError::Spawn { device: d.name.clone(), source })?;
            coprocessors.push(cop);
            ports.push(port);
        }
        Ok(Soc { frames, darts: built, devices, service, coprocessors, ports })
    }

    /// The default SoC of the main job: 256 MiB, 16 KiB pages, `dart-ane`
    /// (t8110), `dart-disp` (t6000), `dart-usb` (t8020), coprocessors `ane`,
    /// `disp`, `usb` and a trusted `sep` (on `dart-ane`).
    pub fn default_soc() -> (SocConfig, Vec<config::DartConfig>, Vec<CoprocessorConfig>) {
        let soc = SocConfig { memory_mib: 256, ..SocConfig::default() };
        let dart = |name: &str, variant| config::DartConfig {
            name: name.into(),
            variant,
            streams: 16,
            invalidation: Invalidation::Strict,
            iotlb_entries: 256,
            line: 0,
        };
        let darts =
            vec![dart("dart-ane", Variant::T8110), dart("dart-disp", Variant::T6000), dart("dart-usb", Variant::T8020)];
        let dev = |name: &str, dart: &str, stream, trusted| CoprocessorConfig {
            name: name.into(),
            dart: dart.into(),
            stream,
            trusted,
            window: config::DEFAULT_WINDOW,
            line: 0,
        };
        let devices = vec![
            dev("ane", "dart-ane", 1, false),
            dev("disp", "dart-disp", 1, false),
            dev("usb", "dart-usb", 1, false),
            dev("sep", "dart-ane", 2, true),
        ];
        (soc, darts, devices)
    }

    /// Records every DART's events and the frame table's (as source
    /// `frames`) into `log`; `None` stops recording.
    pub fn set_event_log(&self, log: Option<Arc<EventLog>>) {
        for d in &self.darts {
            d.set_event_log(log.clone());
        }
        let observer = log.map(|log| -> Arc<FrameObserver> {
            Arc::new(move |e: &FrameEvent| log.record("frames", EventKind::from_frame_event(e)))
        });
        self.frames.set_observer(observer);
    }

    /// The device named `name`.
    pub fn device(&self, name: &str) -> Option<(usize, &Device)> {
        self.devices.iter().enumerate().find(|(_, d)| d.name == name)
    }

    /// The DART named `name`.
    pub fn dart(&self, name: &str) -> Option<&Arc<Dart>> {
        self.darts.iter().find(|d| d.name() == name)
    }
}
