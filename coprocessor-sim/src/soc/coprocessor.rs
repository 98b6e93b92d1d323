//! Coprocessors as threads: each owns one DART stream and a command ring (a
//! crossbeam channel) through which the kernel, a test or a scenario tells it
//! what to do. Honest behaviours (a copy engine, a tensor loader streaming
//! 4 KiB tiles, a block device filling granted buffers) and compromised ones
//! driven by a script of raw DMA commands.
//!
//! A coprocessor holds its stream's [`StreamPort`] and nothing else: every
//! access goes through its stream on its DART, and the type leaves it no
//! other way to memory (no `Dart`, frame table or physical memory is
//! reachable from a port).

use crossbeam::channel::{self, Receiver, Sender};
use dart::vm_memory::Permissions;
use dart::{DartError, SliceHold, StreamPort};
use frame_table::Perm;
use std::thread::JoinHandle;

/// Largest accepted `len` of one `dma-read`, `cpu-read` or `hold` step (the
/// read buffer is allocated before the access; 64 race threads reading at
/// once stay within 1 GiB), and of a [`Command::DmaRead`]. One of the
/// scenario input limits, re-exported by [`crate::scenario`].
pub const MAX_READ_BYTES: u64 = 1 << 24;

/// What a coprocessor is told to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Read `len` bytes at `iova`.
    DmaRead {
        /// IOVA.
        iova: u64,
        /// Bytes.
        len: u64,
    },
    /// Write `data` at `iova`.
    DmaWrite {
        /// IOVA.
        iova: u64,
        /// Bytes.
        data: Vec<u8>,
    },
    /// Copy engine: copy `len` bytes from `src` to `dst` in 4 KiB chunks.
    Copy {
        /// Source IOVA.
        src: u64,
        /// Destination IOVA.
        dst: u64,
        /// Bytes.
        len: u64,
    },
    /// Tensor loader: stream `tiles` 4 KiB tiles starting at `iova`; the
    /// reply carries a checksum (wrapping byte sum) of everything loaded.
    LoadTiles {
        /// First tile's IOVA.
        iova: u64,
        /// Tiles.
        tiles: u64,
    },
    /// Block device: fill `blocks` 4 KiB blocks at `iova` with block `lba`,
    /// `lba + 1`, … (each block: its 8-byte little-endian LBA repeated).
    ReadBlocks {
        /// Destination IOVA (a granted, mapped buffer).
        iova: u64,
        /// First logical block.
        lba: u64,
        /// Blocks.
        blocks: u64,
    },
    /// Hold the frames of `[iova, iova + len)` as a slice of them would
    /// (`StreamPort::hold`) until [`Command::Release`]: a device that keeps
    /// a buffer across requests, or a compromised one that will not let go.
    Hold {
        /// IOVA.
        iova: u64,
        /// Bytes.
        len: u64,
        /// The direction translated.
        perm: Perm,
    },
    /// Drop every hold this coprocessor keeps.
    Release,
    /// A compromised device's script: run each command, stop at nothing
    /// (every result is collected).
    Script(Vec<Command>),
}

/// What a coprocessor answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done; for reads the bytes, for tiles the checksum as 8 LE bytes.
    Done(Vec<u8>),
    /// The access was refused (fault, halted, …).
    Failed(DartError),
    /// Results of a script, in order.
    Script(Vec<Reply>),
}

/// A coprocessor's engine: what its thread runs. `holds` are the slice
/// holds it keeps between commands (not `Send`: they live and die on this
/// thread).
fn execute(port: &StreamPort, holds: &mut Vec<SliceHold>, cmd: Command) -> Reply {
    const TILE: u64 = 4096;
    if let Command::Script(cmds) = cmd {
        return Reply::Script(cmds.into_iter().map(|c| execute(port, holds, c)).collect());
    }
    let r = || -> Result<Vec<u8>, DartError> {
        match cmd {
            Command::DmaRead { iova, len } => {
                if len > MAX_READ_BYTES {
                    return Err(DartError::BadRange {
                        iova,
                        len,
                        reason: "longer than the longest read a step may ask for",
                    });
                }
                let mut buf = vec![0u8; len as usize];
                port.dma_read(iova, &mut buf)?;
                Ok(buf)
            }
            Command::DmaWrite { iova, data } => port.dma_write(iova, &data).map(|_| Vec::new()),
            Command::Copy { src, dst, len } => {
                let mut buf = vec![0u8; TILE as usize];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(TILE) as usize;
                    port.dma_read(src + done, &mut buf[..n])?;
                    port.dma_write(dst + done, &buf[..n])?;
                    done += n as u64;
                }
                Ok(Vec::new())
            }
            Command::LoadTiles { iova, tiles } => {
                let mut tile = vec![0u8; TILE as usize];
                let mut sum = 0u64;
                for t in 0..tiles {
                    port.dma_read(iova + t * TILE, &mut tile)?;
                    sum = tile.iter().fold(sum, |s, &b| s.wrapping_add(b as u64));
                }
                Ok(sum.to_le_bytes().to_vec())
            }
            Command::ReadBlocks { iova, lba, blocks } => {
                for b in 0..blocks {
                    let block: Vec<u8> = (lba + b).to_le_bytes().iter().copied().cycle().take(TILE as usize).collect();
                    port.dma_write(iova + b * TILE, &block)?;
                }
                Ok(Vec::new())
            }
            Command::Hold { iova, len, perm } => {
                if len > MAX_READ_BYTES {
                    return Err(DartError::BadRange {
                        iova,
                        len,
                        reason: "longer than the longest hold a step may ask for",
                    });
                }
                let access = match (perm.read(), perm.write()) {
                    (true, true) => Permissions::ReadWrite,
                    (false, true) => Permissions::Write,
                    _ => Permissions::Read,
                };
                holds.push(port.hold(iova, len, access)?);
                Ok(Vec::new())
            }
            Command::Release => {
                holds.clear();
                Ok(Vec::new())
            }
            Command::Script(_) => Ok(Vec::new()),
        }
    };
    match r() {
        Ok(v) => Reply::Done(v),
        Err(e) => Reply::Failed(e),
    }
}

type Request = (Command, Sender<Reply>);

/// A running coprocessor.
#[derive(Debug)]
pub struct Coprocessor {
    name: String,
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Coprocessor {
    /// Starts a coprocessor thread that owns `port` (the kernel hands it
    /// out with `Dart::port`); the error when the OS refuses the thread.
    pub fn spawn(name: impl Into<String>, port: StreamPort) -> std::io::Result<Coprocessor> {
        let name = name.into();
        let (tx, rx): (Sender<Request>, Receiver<Request>) = channel::unbounded();
        let thread = std::thread::Builder::new().name(format!("coproc-{name}")).spawn(move || {
            let mut holds = Vec::new();
            for (cmd, reply) in rx {
                let _ = reply.send(execute(&port, &mut holds, cmd));
            }
        })?;
        Ok(Coprocessor { name, tx: Some(tx), thread: Some(thread) })
    }

    /// The coprocessor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `cmd` to the coprocessor and waits for its reply.
    pub fn call(&self, cmd: Command) -> Reply {
        let (rtx, rrx) = channel::bounded(1);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send((cmd, rtx)).is_ok());
        match (sent, rrx.recv()) {
            (true, Ok(r)) => r,
            _ => Reply::Failed(DartError::Config { reason: format!("coprocessor `{}` has stopped", self.name) }),
        }
    }
}

impl Drop for Coprocessor {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
