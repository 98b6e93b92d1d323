//! TOML text → [`Scenario`].
//!
//! The document is first deserialized by `toml` into a tree of [`Value`]s in
//! which every key and every value is a [`toml::Spanned`] (byte range in the
//! source); the conversion to the AST then reports each problem at the line
//! of the key or value concerned, or of the table (`[[step]]` header, inline
//! `{ … }`) for a missing field.

use super::ast::{
    counter_names, shorten, Address, Check, CoprocessorConfig, CounterCmp, CounterRef, DartConfig, DartVariant,
    FaultKind, FrameRef, Invalidation, Invariant, MmioValue, Op, Outcome, PteValue, RpcCall, Scenario, SocConfig,
    Space, Step, Target, DEFAULT_DART_NAME, DEFAULT_DEVICE_NAME, DEFAULT_DEVICE_STREAM, DEFAULT_IOTLB_ENTRIES,
    DEFAULT_STREAMS, DEFAULT_WINDOW, MAX_ALLOC_FRAMES, MAX_COPROCESSORS, MAX_DARTS, MAX_FILE_BYTES, MAX_FRAMES,
    MAX_IOTLB_ENTRIES, MAX_ITERATIONS, MAX_MEMORY_MIB, MAX_RACE_THREADS, MAX_READ_BYTES, MAX_STEPS, MAX_WORK, OP_NAMES,
};
use super::error::{Limit, LimitExceeded, ScenarioError};
use frame_table::{FrameSize, FrameType, OnViolation, Perm};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use toml::Spanned;

type Result<T> = std::result::Result<T, ScenarioError>;

/// Reads and parses the scenario file at `path`. Unreadable files are
/// [`ScenarioError`]s with line 0; text that is not UTF-8 is reported at the
/// line of the first bad byte.
pub fn load_scenario(path: &Path) -> Result<Scenario> {
    let unreadable = |e: std::io::Error| ScenarioError {
        file: path.to_path_buf(),
        line: 0,
        reason: format!("cannot read the scenario file: {e}"),
        limit: None,
    };
    // At most one byte past the limit is read: enough to know it is too big.
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)).map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        let limit = LimitExceeded { what: Limit::FileBytes, value: size, limit: MAX_FILE_BYTES };
        return Err(ScenarioError {
            file: path.to_path_buf(),
            line: 0,
            reason: format!("the file is too big: {limit}"),
            limit: Some(limit),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        ScenarioError {
            file: path.to_path_buf(),
            line: 1 + bytes[..good].iter().filter(|&&b| b == b'\n').count(),
            reason: format!("the file is not valid UTF-8 (bad byte at offset {good})"),
            limit: None,
        }
    })?;
    parse_scenario(&text, path)
}

/// Parses the text of a scenario file. `file` names it in errors and in
/// [`Scenario::file`]; it is not read.
pub fn parse_scenario(source: &str, file: &Path) -> Result<Scenario> {
    let cx = Cx::new(source, file);
    let root: Spanned<Value> = toml::from_str(source).map_err(|e| cx.toml_error(&e))?;
    let Value::Table(entries) = root.get_ref() else {
        return Err(cx.error(1, "the document is not a table"));
    };
    let top = Fields::new(&cx, "the top-level table".to_owned(), 1, entries);
    top.check_keys(&TOP_KEYS)?;

    let name_field = top.req("name")?;
    let name = name_field.str()?;
    if name.trim().is_empty() {
        return Err(name_field.err("must not be empty"));
    }
    let description = top.get("description").map(|f| f.str().map(str::to_owned)).transpose()?;
    let soc = match top.get("soc") {
        Some(f) => parse_soc(&cx, &f)?,
        None => SocConfig::default(),
    };
    let darts = parse_darts(&cx, top.get("dart"))?;
    let coprocessors = parse_coprocessors(&cx, top.get("coprocessor"), &darts)?;

    let mut steps = Vec::new();
    // Steps in the file (race threads' included) and the step executions
    // they ask for, against MAX_STEPS and MAX_WORK.
    let (mut count, mut work) = (0u64, 0u64);
    if let Some(f) = top.get("step") {
        for (index, item) in f.array_of_tables("[[step]]")?.iter().enumerate() {
            let step = parse_step(&cx, item, index, format!("step {}", index + 1), false)?;
            let (n, w) = match &step.op {
                Op::Race { iterations, threads } => {
                    let inner = threads.iter().map(|t| t.len() as u64).sum::<u64>();
                    (1 + inner, iterations.saturating_mul(inner))
                }
                _ => (1, 1),
            };
            count += n;
            work = work.saturating_add(w);
            let place = format!("step {}", index + 1);
            if count > MAX_STEPS as u64 {
                return Err(cx.over(step.line, place, Limit::Steps, count, MAX_STEPS as u64));
            }
            if work > MAX_WORK {
                return Err(cx.over(step.line, place, Limit::Work, work, MAX_WORK));
            }
            steps.push(step);
        }
    }

    Ok(Scenario { file: file.to_path_buf(), name: name.to_owned(), description, soc, darts, coprocessors, steps })
}

// ---------------------------------------------------------------------------
// Keys.

const TOP_KEYS: [&str; 6] = ["name", "description", "soc", "dart", "coprocessor", "step"];
const SOC_KEYS: [&str; 3] = ["memory_mib", "page_size", "on_violation"];
const DART_KEYS: [&str; 5] = ["name", "variant", "streams", "invalidation", "iotlb_entries"];
const COPROCESSOR_KEYS: [&str; 5] = ["name", "dart", "stream", "trusted", "window"];
/// Keys every step takes.
const STEP_KEYS: [&str; 2] = ["op", "expect"];

/// The keys of `op` besides [`STEP_KEYS`]; `None` for an unknown op. For
/// `rpc`, the union over all calls (each call is then checked on its own).
fn op_keys(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "alloc" => &["name", "type", "frames", "align"],
        "retype" => &["target", "type"],
        "free" => &["target"],
        "cpu-map" | "cpu-unmap" => &["target", "space", "perm"],
        "cpu-write" => &["target", "offset", "data"],
        "cpu-read" => &["target", "offset", "len", "data"],
        "map" => &["device", "iova", "target", "perm", "subpage"],
        "unmap" => &["device", "iova", "len"],
        "flush" => &["dart", "stream"],
        "grant" => &["device", "target", "perm", "name"],
        "revoke" => &["name"],
        "rpc" => &["device", "call", "handle", "offset", "len", "iova", "perm", "pa", "bytes"],
        "dma-read" => &["device", "iova", "len", "data"],
        "dma-write" => &["device", "iova", "data"],
        "bypass" => &["device", "enable"],
        "mmio-write" => &["dart", "offset", "value"],
        "mmio-read" => &["dart", "offset", "value", "mask"],
        "pte-write" => &["dart", "table", "index", "value"],
        "pte-read" => &["dart", "table", "index", "value", "mask"],
        "release-table" => &["dart", "table"],
        "hold" => &["device", "iova", "len", "perm"],
        "release" => &["device"],
        "check" => &["invariant", "counter", "holds", "equals", "at_least"],
        "race" => &["iterations", "threads"],
        "watch" => &["device", "iova", "len", "enable"],
        _ => return None,
    })
}

/// The keys of an rpc `call` besides `device` and `call`.
fn rpc_call_keys(call: &str) -> Option<&'static [&'static str]> {
    Some(match call {
        "map" => &["handle", "offset", "len", "iova", "perm"],
        "unmap" => &["iova", "len"],
        "map-pa" => &["pa", "len", "iova", "perm"],
        "raw" => &["bytes"],
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// The spanned document tree.

type Entries = [(Spanned<String>, Spanned<Value>)];

/// A TOML value whose children keep their spans.
#[derive(Debug)]
enum Value {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    Array(Vec<Spanned<Value>>),
    Table(Vec<(Spanned<String>, Spanned<Value>)>),
}

impl Value {
    /// "an integer", "the string \"x\"", … for messages.
    fn describe(&self) -> String {
        match self {
            Value::Str(s) => format!("the string \"{}\"", shorten(s)),
            Value::Int(i) => format!("the integer {i}"),
            Value::Float(v) => format!("the float {v}"),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Array(_) => "an array".to_owned(),
            Value::Table(_) => "a table".to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ValueVisitor;

        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Value, E> {
                Ok(Value::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Value, E> {
                Ok(Value::Int(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Value, E> {
                Ok(Value::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Value::Table(entries))
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

// ---------------------------------------------------------------------------
// Context: file name and byte offset → line.

struct Cx {
    file: PathBuf,
    source: String,
    /// Byte offset of the start of every line.
    line_starts: Vec<usize>,
    len: usize,
    ends_with_newline: bool,
}

impl Cx {
    fn new(source: &str, file: &Path) -> Cx {
        let mut line_starts = vec![0];
        line_starts.extend(source.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1));
        Cx {
            file: file.to_path_buf(),
            source: source.to_owned(),
            line_starts,
            len: source.len(),
            ends_with_newline: source.ends_with('\n'),
        }
    }

    /// 1-based line of a byte offset. The end of a file that ends with a
    /// newline counts as its last line.
    fn line(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.len);
        if offset == self.len && offset > 0 && self.ends_with_newline {
            offset -= 1;
        }
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The key of a `key = value` line, for a value starting at `offset`.
    fn key_before(&self, offset: usize) -> Option<String> {
        let start = self.source.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
        let (key, _) = self.source.get(start..offset)?.split_once('=')?;
        let key = key.trim();
        let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c));
        bare.then(|| shorten(key))
    }

    fn error(&self, line: usize, reason: impl Into<String>) -> ScenarioError {
        ScenarioError { file: self.file.clone(), line, reason: reason.into(), limit: None }
    }

    /// `what` (at `line`, described by `place`) is `value`, above `limit`.
    fn over(&self, line: usize, place: impl fmt::Display, what: Limit, value: u64, limit: u64) -> ScenarioError {
        let exceeded = LimitExceeded { what, value, limit };
        ScenarioError { limit: Some(exceeded), ..self.error(line, format!("{place}: {exceeded}")) }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ScenarioError {
        let line = e.span().map_or(0, |span| self.line(span.start));
        let message = e.message();
        let reason = if message.contains("$__toml_private_datetime") {
            "dates and times are not supported in scenario files".to_owned()
        } else if message.contains("number too large") {
            let key = e.span().and_then(|span| self.key_before(span.start));
            let key = key.map(|k| format!("`{k}`: ")).unwrap_or_default();
            format!(
                "{key}integer out of range (TOML integers stop at {}; `iova`, `pa` and MMIO `value` also take \
                 strings such as \"0xffff_ffff_ffff_c000\")",
                i64::MAX
            )
        } else {
            let parts: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            format!("TOML syntax error: {}", parts.join("; "))
        };
        self.error(line, reason)
    }
}

// ---------------------------------------------------------------------------
// Tables and fields.

/// The entries of one table, with what to call it in messages.
struct Fields<'f> {
    cx: &'f Cx,
    /// `step 3 (op = "map")`, `[soc]`, `dart `dart0``, …
    what: String,
    /// Line of the table (header or inline `{`).
    line: usize,
    entries: &'f Entries,
}

impl<'f> Fields<'f> {
    fn new(cx: &'f Cx, what: String, line: usize, entries: &'f Entries) -> Fields<'f> {
        Fields { cx, what, line, entries }
    }

    /// The first key not in `allowed` is an error at its line.
    fn check_keys(&self, allowed: &[&str]) -> Result<()> {
        for (key, _) in self.entries {
            if !allowed.contains(&key.get_ref().as_str()) {
                return Err(self.cx.error(
                    self.cx.line(key.span().start),
                    format!(
                        "unknown key `{}` in {}; expected one of {}",
                        shorten(key.get_ref()),
                        self.what,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn get<'s>(&'s self, key: &'s str) -> Option<Field<'s>> {
        self.entries.iter().find(|(k, _)| k.get_ref() == key).map(|(_, item)| Field {
            cx: self.cx,
            key,
            what: &self.what,
            item,
        })
    }

    fn missing(&self, key: &str) -> ScenarioError {
        self.cx.error(self.line, format!("{} is missing `{key}`", self.what))
    }

    fn req<'s>(&'s self, key: &'s str) -> Result<Field<'s>> {
        self.get(key).ok_or_else(|| self.missing(key))
    }
}

/// One value of a table, with its key and table name for messages.
struct Field<'f> {
    cx: &'f Cx,
    key: &'f str,
    what: &'f str,
    item: &'f Spanned<Value>,
}

impl<'f> Field<'f> {
    fn line(&self) -> usize {
        self.cx.line(self.item.span().start)
    }

    fn value(&self) -> &'f Value {
        self.item.get_ref()
    }

    /// "`KEY` in WHAT TAIL".
    fn err(&self, tail: impl fmt::Display) -> ScenarioError {
        self.cx.error(self.line(), format!("`{}` in {} {tail}", self.key, self.what))
    }

    /// "`KEY` in WHAT: DETAIL".
    fn err_detail(&self, detail: impl fmt::Display) -> ScenarioError {
        self.cx.error(self.line(), format!("`{}` in {}: {detail}", self.key, self.what))
    }

    /// This value is above its limit.
    fn over(&self, what: Limit, value: u64, limit: u64) -> ScenarioError {
        self.cx.over(self.line(), format_args!("`{}` in {}", self.key, self.what), what, value, limit)
    }

    /// This value as a `u64` no greater than `limit`.
    fn u64_at_most(&self, what: Limit, limit: u64) -> Result<u64> {
        let v = self.u64()?;
        if v > limit {
            return Err(self.over(what, v, limit));
        }
        Ok(v)
    }

    fn wrong_type(&self, expected: &str) -> ScenarioError {
        self.err(format_args!("must be {expected}, got {}", self.value().describe()))
    }

    fn str(&self) -> Result<&'f str> {
        match self.value() {
            Value::Str(s) => Ok(s),
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn bool(&self) -> Result<bool> {
        match self.value() {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong_type("a boolean (true or false)")),
        }
    }

    fn u64(&self) -> Result<u64> {
        match self.value() {
            Value::Int(v) => self.int_to_u64(*v),
            _ => Err(self.wrong_type("a non-negative integer")),
        }
    }

    fn int_to_u64(&self, v: i128) -> Result<u64> {
        if v < 0 {
            Err(self.err(format_args!("must not be negative, got {v}")))
        } else {
            u64::try_from(v).map_err(|_| self.err(format_args!("is out of range: {v} (at most {})", u64::MAX)))
        }
    }

    fn u32(&self) -> Result<u32> {
        let v = self.u64()?;
        u32::try_from(v).map_err(|_| self.err(format_args!("is out of range: {v} (at most {})", u32::MAX)))
    }

    fn table(&self, shape: &str) -> Result<&'f Entries> {
        match self.value() {
            Value::Table(entries) => Ok(entries),
            _ => Err(self.wrong_type(shape)),
        }
    }

    fn array(&self, shape: &str) -> Result<&'f [Spanned<Value>]> {
        match self.value() {
            Value::Array(items) => Ok(items),
            _ => Err(self.wrong_type(shape)),
        }
    }

    /// An array of tables (`[[dart]]`, `[[step]]`), or an error telling how
    /// to write one.
    fn array_of_tables(&self, header: &str) -> Result<&'f [Spanned<Value>]> {
        self.array(&format!("an array of tables (write {header} sections)"))
    }

    /// A string, converted by `parse`; its error becomes the detail.
    fn parse<T>(&self, parse: impl FnOnce(&str) -> std::result::Result<T, String>) -> Result<T> {
        let s = self.str()?;
        parse(s).map_err(|detail| self.err_detail(detail))
    }

    /// A name of a buffer, device, DART or handle.
    fn name(&self) -> Result<String> {
        self.parse(|s| check_name(s).map(|()| s.to_owned()))
    }

    fn frame_type(&self) -> Result<FrameType> {
        self.parse(|s| s.parse::<FrameType>().map_err(|e| e.to_string()))
    }

    fn perm(&self) -> Result<Perm> {
        self.parse(|s| s.parse::<Perm>().map_err(|e| e.to_string()))
    }

    /// `r` or `rw` (CPU mappings).
    fn cpu_perm(&self) -> Result<Perm> {
        let perm = self.perm()?;
        if perm == Perm::W {
            return Err(self.err_detail("CPU mappings take r or rw, not w"));
        }
        Ok(perm)
    }

    fn hex(&self) -> Result<Vec<u8>> {
        self.parse(parse_hex)
    }

    fn target(&self) -> Result<Target> {
        self.parse(parse_target)
    }

    fn address(&self) -> Result<Address> {
        match self.value() {
            Value::Int(v) => Ok(Address::Int(self.int_to_u64(*v)?)),
            Value::Str(s) => parse_address(s).map_err(|d| self.err_detail(d)),
            _ => Err(self.wrong_type("an integer or a string \"pa:NAME[i]\"")),
        }
    }

    fn mmio_value(&self) -> Result<MmioValue> {
        match self.value() {
            Value::Int(v) => Ok(MmioValue::Int(self.int_to_u64(*v)?)),
            Value::Str(s) => parse_mmio_value(s).map_err(|d| self.err_detail(d)),
            _ => Err(self.wrong_type("an integer or a string \"ttbr:NAME[i]\" / \"ttbr:DEVICE\" / \"pa:NAME[i]\"")),
        }
    }

    /// A 64-bit mask: an integer, or a string such as
    /// `"0xffff_ffff_ffff_ffff"` for values past TOML's `i64::MAX`.
    fn pte_mask(&self) -> Result<u64> {
        match self.value() {
            Value::Int(v) => self.int_to_u64(*v),
            Value::Str(s) => parse_uint(s).map_err(|e| match e {
                UintError::Invalid => self.err_detail(format_args!("bad mask `{}`: expected an integer", shorten(s))),
                UintError::Overflow => {
                    self.err_detail(format_args!("`{}` is out of range (at most {:#x})", shorten(s), u64::MAX))
                }
            }),
            _ => Err(self.wrong_type("an integer or a string \"0x…\"")),
        }
    }

    /// One table frame (a `pte-*` step's `table`): `NAME[i]` or `ttbr:DEVICE`.
    fn table_frame(&self) -> Result<Target> {
        self.parse(|s| {
            parse_table_frame(s)
                .map_err(|e| format!("bad table `{}`: {e}; expected NAME[i] or ttbr:DEVICE", shorten(s)))
        })
    }

    fn pte_value(&self) -> Result<PteValue> {
        match self.value() {
            Value::Int(v) => Ok(PteValue::Int(self.int_to_u64(*v)?)),
            Value::Str(s) => parse_pte_value(s).map_err(|d| self.err_detail(d)),
            _ => Err(self.wrong_type("an integer or a string \"0x…\" / \"leaf:NAME[i]:PERM\" / \"table:NAME[i]\"")),
        }
    }

    /// `[start, end]`: an array of two non-negative integers.
    fn pair(&self) -> Result<(u64, u64)> {
        const SHAPE: &str = "an array of two non-negative integers [start, end]";
        match self.value() {
            Value::Array(items) if items.len() == 2 => {
                let mut out = [0u64; 2];
                for (slot, item) in out.iter_mut().zip(items) {
                    let part = Field { cx: self.cx, key: self.key, what: self.what, item };
                    *slot = match part.value() {
                        Value::Int(v) => part.int_to_u64(*v)?,
                        _ => return Err(self.wrong_type(SHAPE)),
                    };
                }
                Ok((out[0], out[1]))
            }
            Value::Array(items) => {
                Err(self.err(format_args!("must be an array of two integers [start, end], got {} items", items.len())))
            }
            _ => Err(self.wrong_type(SHAPE)),
        }
    }
}

// ---------------------------------------------------------------------------
// String syntaxes: names, integers, targets, addresses, hex data, counters.

/// Names of buffers, devices, DARTs and handles: ASCII letters, digits, `_`, `-`.
fn check_name(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!(
            "`{}` is not a valid name: `{}` is not allowed (use letters, digits, `_` and `-`)",
            shorten(s),
            c.escape_debug()
        ));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum UintError {
    Invalid,
    Overflow,
}

/// An unsigned integer literal in a string: decimal, `0x`, `0o` or `0b`,
/// with `_` between digits.
fn parse_uint(s: &str) -> std::result::Result<u64, UintError> {
    let (radix, digits) = if let Some(d) = s.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = s.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = s.strip_prefix("0b") {
        (2, d)
    } else {
        (10, s)
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return Err(UintError::Invalid);
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if !clean.chars().all(|c| c.is_digit(radix)) {
        return Err(UintError::Invalid);
    }
    // Every character is a digit, so the only failure left is overflow.
    u64::from_str_radix(&clean, radix).map_err(|_| UintError::Overflow)
}

/// `NAME` or `NAME[i]`.
fn parse_indexed(s: &str) -> std::result::Result<(String, Option<u64>), String> {
    let (name, index) = match s.find('[') {
        None => (s, None),
        Some(open) => {
            let Some(inner) = s[open + 1..].strip_suffix(']') else {
                return Err("missing `]` at the end".to_owned());
            };
            (&s[..open], Some(inner))
        }
    };
    check_name(name)?;
    let index = match index {
        None => None,
        Some(i) => Some(parse_uint(i).map_err(|e| match e {
            UintError::Invalid => format!("index `{}` is not a non-negative integer", shorten(i)),
            UintError::Overflow => format!("index `{}` is out of range", shorten(i)),
        })?),
    };
    Ok((name.to_owned(), index))
}

/// `NAME[i]` (the part after `pa:` / `ttbr:`).
fn parse_frame_ref(s: &str) -> std::result::Result<FrameRef, String> {
    match parse_indexed(s)? {
        (buffer, Some(index)) => Ok(FrameRef { buffer, index }),
        (_, None) => Err("a frame index `[i]` is needed".to_owned()),
    }
}

fn parse_target(s: &str) -> std::result::Result<Target, String> {
    const FORMS: &str = "targets are NAME, NAME[i] or ttbr:DEVICE";
    let bad = |why: String| format!("bad target `{}`: {why}; {FORMS}", shorten(s));
    if let Some(device) = s.strip_prefix("ttbr:") {
        check_name(device).map_err(bad)?;
        return Ok(Target::Ttbr(device.to_owned()));
    }
    if let Some((prefix, _)) = s.split_once(':') {
        return Err(bad(format!("unknown prefix `{}:`", shorten(prefix))));
    }
    match parse_indexed(s).map_err(bad)? {
        (name, None) => Ok(Target::Buffer(name)),
        (buffer, Some(index)) => Ok(Target::Frame(FrameRef { buffer, index })),
    }
}

fn parse_address(s: &str) -> std::result::Result<Address, String> {
    if let Some(rest) = s.strip_prefix("pa:") {
        return parse_frame_ref(rest).map(Address::Pa).map_err(|e| format!("bad address `{}`: {e}", shorten(s)));
    }
    match parse_uint(s) {
        Ok(v) => Ok(Address::Int(v)),
        Err(UintError::Overflow) => Err(format!("`{}` is out of range (at most {:#x})", shorten(s), u64::MAX)),
        Err(UintError::Invalid) => Err(format!("bad address `{}`: expected an integer or \"pa:NAME[i]\"", shorten(s))),
    }
}

fn parse_mmio_value(s: &str) -> std::result::Result<MmioValue, String> {
    let bad_ref = |e: String| format!("bad value `{}`: {e}", shorten(s));
    if let Some(rest) = s.strip_prefix("ttbr:") {
        return match parse_indexed(rest).map_err(bad_ref)? {
            (buffer, Some(index)) => Ok(MmioValue::Ttbr(FrameRef { buffer, index })),
            (device, None) => Ok(MmioValue::DeviceTtbr(device)),
        };
    }
    if let Some(rest) = s.strip_prefix("pa:") {
        return parse_frame_ref(rest).map(MmioValue::Pa).map_err(bad_ref);
    }
    match parse_uint(s) {
        Ok(v) => Ok(MmioValue::Int(v)),
        Err(UintError::Overflow) => Err(format!("`{}` is out of range (at most {:#x})", shorten(s), u64::MAX)),
        Err(UintError::Invalid) => Err(format!(
            "bad value `{}`: expected an integer, \"ttbr:NAME[i]\", \"ttbr:DEVICE\" or \"pa:NAME[i]\"",
            shorten(s)
        )),
    }
}

/// One table frame: `NAME[i]`, or `ttbr:DEVICE` (the table TTBR 0 of that
/// device's stream names, e.g. a mapper-built root).
fn parse_table_frame(s: &str) -> std::result::Result<Target, String> {
    if let Some(device) = s.strip_prefix("ttbr:") {
        check_name(device)?;
        return Ok(Target::Ttbr(device.to_owned()));
    }
    parse_frame_ref(s).map(Target::Frame)
}

/// A table entry: an integer (decimal, `0x`, …), `leaf:FRAME:PERM` with an
/// optional `:nocache`, or `table:FRAME`; FRAME is `NAME[i]` or `ttbr:DEVICE`.
fn parse_pte_value(s: &str) -> std::result::Result<PteValue, String> {
    let bad = |e: String| format!("bad value `{}`: {e}", shorten(s));
    if let Some(rest) = s.strip_prefix("leaf:") {
        // FRAME is `NAME[i]` (no `:`) or `ttbr:DEVICE` (one `:`).
        let skip = if rest.starts_with("ttbr:") { "ttbr:".len() } else { 0 };
        let cut = rest[skip..].find(':').map(|i| i + skip);
        let (frame, tail) = match cut {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let frame = parse_table_frame(frame).map_err(bad)?;
        let Some(tail) = tail else {
            return Err(bad("a leaf needs a permission: leaf:NAME[i]:PERM with PERM r, w or rw".to_owned()));
        };
        let mut parts = tail.split(':');
        let perm = parts.next().unwrap_or_default().parse::<Perm>().map_err(|e| bad(e.to_string()))?;
        let nocache = match parts.next() {
            None => false,
            Some("nocache") => true,
            Some(other) => return Err(bad(format!("unknown leaf flag `{}` (expected nocache)", shorten(other)))),
        };
        if let Some(extra) = parts.next() {
            return Err(bad(format!("unexpected `:{}` after the leaf", shorten(extra))));
        }
        return Ok(PteValue::Leaf { frame, perm, nocache });
    }
    if let Some(rest) = s.strip_prefix("table:") {
        return parse_table_frame(rest).map(PteValue::Table).map_err(bad);
    }
    match parse_uint(s) {
        Ok(v) => Ok(PteValue::Int(v)),
        Err(UintError::Overflow) => Err(format!("`{}` is out of range (at most {:#x})", shorten(s), u64::MAX)),
        Err(UintError::Invalid) => Err(format!(
            "bad value `{}`: expected an integer, \"leaf:NAME[i]:PERM\" (PERM r, w or rw; optional :nocache) or \
             \"table:NAME[i]\" (NAME[i] or ttbr:DEVICE)",
            shorten(s)
        )),
    }
}

/// `"0x…"`: bytes in order, an even number of hex digits, `_` allowed.
fn parse_hex(s: &str) -> std::result::Result<Vec<u8>, String> {
    let Some(digits) = s.strip_prefix("0x") else {
        return Err(format!("bad hex data `{}`: it must start with `0x`", shorten(s)));
    };
    let mut nibbles = Vec::with_capacity(digits.len());
    for c in digits.chars().filter(|&c| c != '_') {
        match c.to_digit(16) {
            Some(d) => nibbles.push(d as u8),
            None => return Err(format!("bad hex data `{}`: `{}` is not a hex digit", shorten(s), c.escape_debug())),
        }
    }
    if nibbles.len() % 2 != 0 {
        return Err(format!(
            "bad hex data `{}`: odd number of hex digits ({}); each byte takes two",
            shorten(s),
            nibbles.len()
        ));
    }
    Ok(nibbles.chunks_exact(2).map(|pair| (pair[0] << 4) | pair[1]).collect())
}

/// `"DART.NAME"` or `"DART.sSID.NAME"`.
fn parse_counter(s: &str) -> std::result::Result<CounterRef, String> {
    let bad =
        |why: String| format!("bad counter `{}`: {why}; expected \"DART.NAME\" or \"DART.sSID.NAME\"", shorten(s));
    let Some((dart, rest)) = s.split_once('.') else {
        return Err(bad("no `.` after the DART name".to_owned()));
    };
    check_name(dart).map_err(bad)?;
    let (stream, name) = match rest.split_once('.') {
        Some((first, tail))
            if first.len() > 1 && first.starts_with('s') && first[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            let sid = first[1..].parse::<u32>().map_err(|_| bad(format!("stream `{}` is out of range", first)))?;
            (Some(sid), tail)
        }
        _ => (None, rest),
    };
    let (base, suffix) = match name.split_once('.') {
        Some((base, suffix)) => (base, Some(suffix)),
        None => (name, None),
    };
    if !counter_names().any(|n| n == base) {
        let all: Vec<&str> = counter_names().collect();
        return Err(bad(format!("unknown counter `{}` (expected one of {})", shorten(base), all.join(", "))));
    }
    match (base, suffix) {
        (_, None) => {}
        ("faults", Some(code)) => {
            if !FaultKind::ALL.iter().any(|k| k.code() == code) {
                let codes: Vec<&str> = FaultKind::ALL.iter().map(|k| k.code()).collect();
                return Err(bad(format!(
                    "unknown fault code `{}` (expected one of {})",
                    shorten(code),
                    codes.join(", ")
                )));
            }
        }
        ("rpc_refused", Some(kind)) => {
            if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return Err(bad(format!("bad refusal kind `{}`", shorten(kind))));
            }
        }
        (base, Some(_)) => return Err(bad(format!("counter `{base}` takes no `.` suffix"))),
    }
    Ok(CounterRef { dart: dart.to_owned(), stream, name: name.to_owned() })
}

// ---------------------------------------------------------------------------
// Sections.

fn parse_soc(cx: &Cx, field: &Field<'_>) -> Result<SocConfig> {
    let entries = field.table("a table (write a [soc] section)")?;
    let soc = Fields::new(cx, "[soc]".to_owned(), field.line(), entries);
    soc.check_keys(&SOC_KEYS)?;
    let mut out = SocConfig { line: field.line(), ..SocConfig::default() };
    if let Some(f) = soc.get("memory_mib") {
        let mib = f.u64_at_most(Limit::MemoryMib, MAX_MEMORY_MIB)?;
        if mib == 0 {
            return Err(f.err(format_args!("must be at least 1, got {mib}")));
        }
        out.memory_mib = mib;
    }
    if let Some(f) = soc.get("page_size") {
        let bytes = f.u64()?;
        out.page_size =
            FrameSize::from_bytes(bytes).ok_or_else(|| f.err(format_args!("must be 16384 or 4096, got {bytes}")))?;
    }
    let frames = out.memory_bytes() >> out.page_size.shift();
    if frames > MAX_FRAMES {
        let line = soc.get("memory_mib").map_or(field.line(), |f| f.line());
        return Err(cx.over(line, "[soc] memory over page_size", Limit::Frames, frames, MAX_FRAMES));
    }
    if let Some(f) = soc.get("on_violation") {
        out.on_violation = f.parse(|s| match s {
            "panic" => Ok(OnViolation::Panic),
            "reject" => Ok(OnViolation::Reject),
            _ => Err(format!("unknown on_violation mode `{}` (expected panic or reject)", shorten(s))),
        })?;
    }
    Ok(out)
}

/// The table behind an element of an array of tables.
fn element_table<'f>(cx: &Cx, item: &'f Spanned<Value>, label: &str) -> Result<&'f Entries> {
    match item.get_ref() {
        Value::Table(entries) => Ok(entries),
        other => {
            Err(cx.error(cx.line(item.span().start), format!("{label} must be a table, got {}", other.describe())))
        }
    }
}

fn parse_darts(cx: &Cx, field: Option<Field<'_>>) -> Result<Vec<DartConfig>> {
    let Some(field) = field else {
        return Ok(vec![DartConfig::default_dart()]);
    };
    let mut darts: Vec<DartConfig> = Vec::new();
    let items = field.array_of_tables("[[dart]]")?;
    if let Some(item) = items.get(MAX_DARTS) {
        let line = cx.line(item.span().start);
        return Err(cx.over(line, "[[dart]]", Limit::Darts, items.len() as u64, MAX_DARTS as u64));
    }
    for (n, item) in items.iter().enumerate() {
        let label = format!("[[dart]] #{}", n + 1);
        let line = cx.line(item.span().start);
        let entries = element_table(cx, item, &label)?;
        let unnamed = Fields::new(cx, label, line, entries);
        unnamed.check_keys(&DART_KEYS)?;
        let name_field = unnamed.req("name")?;
        let name = name_field.name()?;
        if let Some(first) = darts.iter().find(|d| d.name == name) {
            return Err(name_field
                .err_detail(format_args!("duplicate dart name `{name}` (first defined on line {})", first.line)));
        }
        let dart = Fields::new(cx, format!("dart `{name}`"), line, entries);
        let variant = match dart.get("variant") {
            Some(f) => f.parse(parse_variant)?,
            None => DartVariant::T8110,
        };
        let max = variant.max_streams();
        let streams = match dart.get("streams") {
            Some(f) => {
                let n = f.u64_at_most(Limit::Streams, u64::from(max))?;
                if n == 0 {
                    return Err(f.err(format_args!("must be between 1 and {max} for {variant}, got {n}")));
                }
                n as u32
            }
            None => DEFAULT_STREAMS.min(max),
        };
        let invalidation = match dart.get("invalidation") {
            Some(f) => f.parse(parse_invalidation)?,
            None => Invalidation::Strict,
        };
        let iotlb_entries = match dart.get("iotlb_entries") {
            Some(f) => {
                let n = f.u64_at_most(Limit::IotlbEntries, MAX_IOTLB_ENTRIES)?;
                if n == 0 {
                    return Err(f.err(format_args!("must be at least 1, got {n}")));
                }
                n
            }
            None => DEFAULT_IOTLB_ENTRIES,
        };
        darts.push(DartConfig { name, variant, streams, invalidation, iotlb_entries, line });
    }
    if darts.is_empty() {
        darts.push(DartConfig::default_dart());
    }
    Ok(darts)
}

fn parse_coprocessors(cx: &Cx, field: Option<Field<'_>>, darts: &[DartConfig]) -> Result<Vec<CoprocessorConfig>> {
    let mut out: Vec<CoprocessorConfig> = Vec::new();
    if let Some(field) = field {
        let items = field.array_of_tables("[[coprocessor]]")?;
        if let Some(item) = items.get(MAX_COPROCESSORS) {
            let line = cx.line(item.span().start);
            let n = items.len() as u64;
            return Err(cx.over(line, "[[coprocessor]]", Limit::Coprocessors, n, MAX_COPROCESSORS as u64));
        }
        for (n, item) in items.iter().enumerate() {
            let label = format!("[[coprocessor]] #{}", n + 1);
            let line = cx.line(item.span().start);
            let entries = element_table(cx, item, &label)?;
            let unnamed = Fields::new(cx, label, line, entries);
            unnamed.check_keys(&COPROCESSOR_KEYS)?;
            let name_field = unnamed.req("name")?;
            let name = name_field.name()?;
            if let Some(first) = out.iter().find(|c| c.name == name) {
                return Err(name_field.err_detail(format_args!(
                    "duplicate coprocessor name `{name}` (first defined on line {})",
                    first.line
                )));
            }
            let cop = Fields::new(cx, format!("coprocessor `{name}`"), line, entries);

            let dart_field = cop.req("dart")?;
            let dart_name = dart_field.str()?;
            let Some(dart) = darts.iter().find(|d| d.name == dart_name) else {
                let known: Vec<&str> = darts.iter().map(|d| d.name.as_str()).collect();
                return Err(dart_field.err_detail(format_args!(
                    "unknown dart `{}` (defined: {})",
                    shorten(dart_name),
                    known.join(", ")
                )));
            };

            let stream_field = cop.req("stream")?;
            let stream = stream_field.u64()?;
            if stream >= u64::from(dart.streams) {
                return Err(stream_field.err(format_args!(
                    "is {stream}, but dart `{}` has {} streams (0 to {})",
                    dart.name,
                    dart.streams,
                    dart.streams - 1
                )));
            }
            let stream = stream as u32;
            if let Some(other) = out.iter().find(|c| c.dart == dart.name && c.stream == stream) {
                return Err(stream_field.err_detail(format_args!(
                    "stream {stream} of dart `{}` is already used by coprocessor `{}` (line {})",
                    dart.name, other.name, other.line
                )));
            }

            let trusted = cop.get("trusted").map(|f| f.bool()).transpose()?.unwrap_or(false);
            let window = match cop.get("window") {
                Some(f) => {
                    let (start, end) = f.pair()?;
                    if start >= end {
                        return Err(f.err(format_args!("must have start < end, got [{start:#x}, {end:#x}]")));
                    }
                    start..end
                }
                None => DEFAULT_WINDOW,
            };
            out.push(CoprocessorConfig { name, dart: dart.name.clone(), stream, trusted, window, line });
        }
    }
    if out.is_empty() {
        let dart = darts.iter().find(|d| d.name == DEFAULT_DART_NAME).unwrap_or(&darts[0]);
        if DEFAULT_DEVICE_STREAM >= dart.streams {
            return Err(cx.error(
                dart.line,
                format!(
                    "the default coprocessor `{DEFAULT_DEVICE_NAME}` needs stream {DEFAULT_DEVICE_STREAM}, but dart `{}` \
                     has only {} stream(s); add a [[coprocessor]] section",
                    dart.name, dart.streams
                ),
            ));
        }
        out.push(CoprocessorConfig {
            name: DEFAULT_DEVICE_NAME.to_owned(),
            dart: dart.name.clone(),
            stream: DEFAULT_DEVICE_STREAM,
            trusted: false,
            window: DEFAULT_WINDOW,
            line: 0,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Steps.

/// Parses one step table. `label` is `step 3` or `step 3 thread 1 step 2`.
fn parse_step(cx: &Cx, item: &Spanned<Value>, index: usize, label: String, in_race: bool) -> Result<Step> {
    let line = cx.line(item.span().start);
    let entries = element_table(cx, item, &label)?;
    let unnamed = Fields::new(cx, label.clone(), line, entries);
    let op_field = unnamed.req("op")?;
    let op_name = op_field.str()?;
    let Some(keys) = op_keys(op_name) else {
        return Err(op_field.err_detail(format_args!(
            "unknown op `{}` (expected one of {})",
            shorten(op_name),
            OP_NAMES.join(", ")
        )));
    };
    let allowed: Vec<&str> = STEP_KEYS.iter().chain(keys).copied().collect();
    let f = Fields::new(cx, format!("{label} (op = \"{op_name}\")"), line, entries);
    f.check_keys(&allowed)?;

    let expect = match f.get("expect") {
        Some(e) => e.parse(|s| s.parse::<Outcome>())?,
        None if in_race => Outcome::Any,
        None => Outcome::Ok,
    };
    let offset = |f: &Fields<'_>| -> Result<u64> { Ok(f.get("offset").map(|o| o.u64()).transpose()?.unwrap_or(0)) };

    let op = match op_name {
        "alloc" => Op::Alloc {
            name: f.req("name")?.name()?,
            ty: f.req("type")?.frame_type()?,
            frames: f
                .get("frames")
                .map(|v| v.u64_at_most(Limit::AllocFrames, MAX_ALLOC_FRAMES))
                .transpose()?
                .unwrap_or(1),
            align: match f.get("align") {
                Some(a) => {
                    let n = a.u64_at_most(Limit::AllocFrames, MAX_ALLOC_FRAMES)?;
                    if !n.is_power_of_two() {
                        return Err(a.err(format_args!("must be a power of two (frames), got {n}")));
                    }
                    n
                }
                None => 1,
            },
        },
        "retype" => Op::Retype { target: f.req("target")?.target()?, ty: f.req("type")?.frame_type()? },
        "free" => Op::Free { target: f.req("target")?.target()? },
        "cpu-map" => Op::CpuMap {
            target: f.req("target")?.target()?,
            space: f.req("space")?.parse(|s| s.parse::<Space>())?,
            perm: f.req("perm")?.cpu_perm()?,
        },
        "cpu-unmap" => Op::CpuUnmap {
            target: f.req("target")?.target()?,
            space: f.req("space")?.parse(|s| s.parse::<Space>())?,
            perm: f.get("perm").map(|p| p.cpu_perm()).transpose()?,
        },
        "cpu-write" => {
            Op::CpuWrite { target: f.req("target")?.target()?, offset: offset(&f)?, data: f.req("data")?.hex()? }
        }
        "cpu-read" => {
            let target = f.req("target")?.target()?;
            let offset = offset(&f)?;
            let (len, data) = read_len_and_data(&f)?;
            Op::CpuRead { target, offset, len, data }
        }
        "map" => Op::Map {
            device: f.req("device")?.name()?,
            iova: f.req("iova")?.address()?,
            target: f.req("target")?.target()?,
            perm: f.req("perm")?.perm()?,
            subpage: match f.get("subpage") {
                Some(s) => {
                    let (start, end) = s.pair()?;
                    Some(start..end)
                }
                None => None,
            },
        },
        "unmap" => {
            Op::Unmap { device: f.req("device")?.name()?, iova: f.req("iova")?.address()?, len: f.req("len")?.u64()? }
        }
        "flush" => Op::Flush { dart: f.req("dart")?.name()?, stream: f.get("stream").map(|s| s.u32()).transpose()? },
        "grant" => Op::Grant {
            device: f.req("device")?.name()?,
            target: f.req("target")?.target()?,
            perm: f.req("perm")?.perm()?,
            name: f.req("name")?.name()?,
        },
        "revoke" => Op::Revoke { name: f.req("name")?.name()? },
        "rpc" => parse_rpc(cx, &f, &label, line, entries)?,
        "dma-read" => {
            let device = f.req("device")?.name()?;
            let iova = f.req("iova")?.address()?;
            let (len, data) = read_len_and_data(&f)?;
            Op::DmaRead { device, iova, len, data }
        }
        "dma-write" => Op::DmaWrite {
            device: f.req("device")?.name()?,
            iova: f.req("iova")?.address()?,
            data: f.req("data")?.hex()?,
        },
        "bypass" => Op::Bypass { device: f.req("device")?.name()?, enable: f.req("enable")?.bool()? },
        "mmio-write" => Op::MmioWrite {
            dart: f.req("dart")?.name()?,
            offset: f.req("offset")?.u64()?,
            value: f.req("value")?.mmio_value()?,
        },
        "mmio-read" => {
            let dart = f.req("dart")?.name()?;
            let offset = f.req("offset")?.u64()?;
            let value = f.get("value").map(|v| v.mmio_value()).transpose()?;
            let mask = read_mask(&f, value.is_some(), |m| m.u64())?;
            Op::MmioRead { dart, offset, value, mask }
        }
        "pte-write" => Op::PteWrite {
            dart: f.req("dart")?.name()?,
            table: f.req("table")?.table_frame()?,
            index: f.req("index")?.u64()?,
            value: f.req("value")?.pte_value()?,
        },
        "pte-read" => {
            let dart = f.req("dart")?.name()?;
            let table = f.req("table")?.table_frame()?;
            let index = f.req("index")?.u64()?;
            let value = f.get("value").map(|v| v.pte_value()).transpose()?;
            let mask = read_mask(&f, value.is_some(), |m| m.pte_mask())?;
            Op::PteRead { dart, table, index, value, mask }
        }
        "release-table" => Op::ReleaseTable { dart: f.req("dart")?.name()?, table: f.req("table")?.table_frame()? },
        "watch" => Op::Watch {
            device: f.req("device")?.name()?,
            iova: f.req("iova")?.address()?,
            len: f.req("len")?.u64()?,
            enable: f.get("enable").map(|e| e.bool()).transpose()?.unwrap_or(true),
        },
        "hold" => Op::Hold {
            device: f.req("device")?.name()?,
            iova: f.req("iova")?.address()?,
            len: f.req("len")?.u64_at_most(Limit::ReadBytes, MAX_READ_BYTES)?,
            perm: f.get("perm").map(|p| p.perm()).transpose()?.unwrap_or(Perm::R),
        },
        "release" => Op::Release { device: f.req("device")?.name()? },
        "check" => Op::Check(parse_check(&f)?),
        "race" => {
            if in_race {
                return Err(op_field.err_detail("race steps cannot be nested"));
            }
            parse_race(cx, &f, &label)?
        }
        // `op_keys` knows every op handled above.
        _ => return Err(op_field.err_detail(format_args!("op `{}` is not handled", shorten(op_name)))),
    };
    Ok(Step { index, line, expect, op })
}

/// The optional `mask` of a register or PTE read (`parse` reads it), which
/// needs an expected `value` to apply to.
fn read_mask(f: &Fields<'_>, has_value: bool, parse: impl FnOnce(&Field<'_>) -> Result<u64>) -> Result<Option<u64>> {
    match f.get("mask") {
        Some(m) if !has_value => Err(m.err("needs an expected `value` to compare")),
        Some(m) => parse(&m).map(Some),
        None => Ok(None),
    }
}

/// `len` and the optional expected `data` of a read; `len` defaults to the
/// length of `data` and must agree with it.
fn read_len_and_data(f: &Fields<'_>) -> Result<(u64, Option<Vec<u8>>)> {
    let data = f.get("data").map(|d| d.hex()).transpose()?;
    let len = match (f.get("len"), &data) {
        (Some(l), data) => {
            let len = l.u64_at_most(Limit::ReadBytes, MAX_READ_BYTES)?;
            if let Some(data) = data {
                if data.len() as u64 != len {
                    return Err(l.err(format_args!("is {len}, but `data` has {} byte(s)", data.len())));
                }
            }
            len
        }
        (None, Some(data)) => data.len() as u64,
        (None, None) => return Err(f.missing("len")),
    };
    Ok((len, data))
}

fn parse_rpc(cx: &Cx, f: &Fields<'_>, label: &str, line: usize, entries: &Entries) -> Result<Op> {
    let device = f.req("device")?.name()?;
    let call_field = f.req("call")?;
    let call = call_field.str()?;
    let Some(keys) = rpc_call_keys(call) else {
        return Err(call_field
            .err_detail(format_args!("unknown rpc call `{}` (expected map, unmap, map-pa or raw)", shorten(call))));
    };
    let allowed: Vec<&str> = STEP_KEYS.iter().chain(&["device", "call"]).chain(keys).copied().collect();
    let c = Fields::new(cx, format!("{label} (op = \"rpc\", call = \"{call}\")"), line, entries);
    c.check_keys(&allowed)?;
    let call = match call {
        "map" => RpcCall::Map {
            handle: c.req("handle")?.name()?,
            offset: c.get("offset").map(|o| o.u64()).transpose()?.unwrap_or(0),
            len: c.req("len")?.u64()?,
            iova: c.req("iova")?.address()?,
            perm: c.req("perm")?.perm()?,
        },
        "unmap" => RpcCall::Unmap { iova: c.req("iova")?.address()?, len: c.req("len")?.u64()? },
        "map-pa" => RpcCall::MapPa {
            pa: c.req("pa")?.address()?,
            len: c.req("len")?.u64()?,
            iova: c.req("iova")?.address()?,
            perm: c.req("perm")?.perm()?,
        },
        "raw" => RpcCall::Raw { bytes: c.req("bytes")?.hex()? },
        // `rpc_call_keys` knows every call handled above.
        _ => return Err(call_field.err_detail(format_args!("rpc call `{}` is not handled", shorten(call)))),
    };
    Ok(Op::Rpc { device, call })
}

fn parse_check(f: &Fields<'_>) -> Result<Check> {
    let what: Vec<_> = ["invariant", "counter", "holds"].into_iter().filter_map(|k| f.get(k).map(|v| (k, v))).collect();
    let equals = f.get("equals");
    let at_least = f.get("at_least");
    let cmp = || -> Result<CounterCmp> {
        match (&equals, &at_least) {
            (Some(_), Some(a)) => Err(a.err("cannot be combined with `equals`")),
            (Some(e), None) => Ok(CounterCmp::Equals(e.u64()?)),
            (None, Some(a)) => Ok(CounterCmp::AtLeast(a.u64()?)),
            (None, None) => Err(f.cx.error(f.line, format!("{} needs `equals` or `at_least`", f.what))),
        }
    };
    match what.as_slice() {
        [] => Err(f.cx.error(f.line, format!("{} needs `invariant`, `counter` or `holds`", f.what))),
        [(first, _), (_, second), ..] => {
            Err(second.err(format!("cannot be combined with `{first}`: a check step checks one thing")))
        }
        [("invariant", inv)] => {
            if let Some(extra) = equals.as_ref().or(at_least.as_ref()) {
                return Err(extra.err("only goes with `counter` or `holds`"));
            }
            Ok(Check::Invariant(inv.parse(|s| s.parse::<Invariant>())?))
        }
        [("counter", c)] => Ok(Check::Counter { counter: c.parse(parse_counter)?, cmp: cmp()? }),
        [(_, t)] => Ok(Check::Holds { target: t.target()?, cmp: cmp()? }),
    }
}

fn parse_race(cx: &Cx, f: &Fields<'_>, label: &str) -> Result<Op> {
    let iterations = match f.get("iterations") {
        Some(i) => {
            let n = i.u64_at_most(Limit::Iterations, MAX_ITERATIONS)?;
            if n == 0 {
                return Err(i.err("must be at least 1"));
            }
            n
        }
        None => 1,
    };
    const SHAPE: &str = "an array of threads, each an array of step tables: [[{ op = … }, …], …]";
    let threads_field = f.req("threads")?;
    let lists = threads_field.array(SHAPE)?;
    if lists.is_empty() {
        return Err(threads_field.err("must list at least one thread"));
    }
    if lists.len() > MAX_RACE_THREADS {
        return Err(threads_field.over(Limit::RaceThreads, lists.len() as u64, MAX_RACE_THREADS as u64));
    }
    let mut threads = Vec::with_capacity(lists.len());
    for (t, list) in lists.iter().enumerate() {
        let Value::Array(items) = list.get_ref() else {
            return Err(cx.error(
                cx.line(list.span().start),
                format!(
                    "thread {} of {} must be an array of step tables, got {}",
                    t + 1,
                    f.what,
                    list.get_ref().describe()
                ),
            ));
        };
        if items.is_empty() {
            return Err(cx.error(cx.line(list.span().start), format!("thread {} of {} has no steps", t + 1, f.what)));
        }
        let mut steps = Vec::with_capacity(items.len());
        for (k, item) in items.iter().enumerate() {
            steps.push(parse_step(cx, item, k, format!("{label} thread {} step {}", t + 1, k + 1), true)?);
        }
        threads.push(steps);
    }
    Ok(Op::Race { iterations, threads })
}

/// A DART variant name, with the offending text shortened in the message.
fn parse_variant(s: &str) -> std::result::Result<DartVariant, String> {
    DartVariant::ALL
        .into_iter()
        .find(|v| v.name() == s)
        .ok_or_else(|| format!("unknown DART variant `{}` (expected t8020, t6000 or t8110)", shorten(s)))
}

/// An invalidation mode name, with the offending text shortened in the message.
fn parse_invalidation(s: &str) -> std::result::Result<Invalidation, String> {
    Invalidation::ALL
        .into_iter()
        .find(|i| i.name() == s)
        .ok_or_else(|| format!("unknown invalidation mode `{}` (expected strict or deferred)", shorten(s)))
}

/// The string syntaxes, for the unit tests.
#[cfg(test)]
pub(super) mod tests_support {
    use super::*;

    pub fn hex(s: &str) -> std::result::Result<Vec<u8>, String> {
        parse_hex(s)
    }
    pub fn target(s: &str) -> std::result::Result<Target, String> {
        parse_target(s)
    }
    pub fn address(s: &str) -> std::result::Result<Address, String> {
        parse_address(s)
    }
    pub fn counter(s: &str) -> std::result::Result<CounterRef, String> {
        parse_counter(s)
    }
    pub fn mmio_value(s: &str) -> std::result::Result<MmioValue, String> {
        parse_mmio_value(s)
    }
    pub fn pte_value(s: &str) -> std::result::Result<PteValue, String> {
        parse_pte_value(s)
    }
}
