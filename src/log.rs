//! JSON-lines logging on stdout: operational logs and audit events share one
//! format, `{"ts":…,"level":…,"event":…,"tenant":…, …}`, one object per line,
//! written whole under a lock so lines never interleave.
//!
//! Nothing secret is ever passed here: callers log usernames, short pins,
//! domains, counts and reply lines — never passwords, AUTH payloads or
//! message content (a test greps a whole run's output for every test secret).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

/// Where a process's lines go.
#[derive(Debug, Clone, Default)]
pub enum Sink {
    /// stdout, through the one non-blocking writer (the product).
    #[default]
    Stdout,
    /// Kept in memory, one entry per line without its newline: an app
    /// served in-process (the tests) reads its own lines from here.
    Lines(Arc<Mutex<Vec<String>>>),
}

/// The log context of one process: the tenant named on every line and
/// where the lines go. Built once at start (`app::build`, from the
/// policy's tenant) and carried explicitly in the process-lifetime state
/// (`process::Process`), not held in a global. The default names no
/// tenant and writes to stdout (the tooling subcommands).
#[derive(Clone, Default)]
pub struct Context(Arc<ContextInner>);

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match self.0.sink {
            Sink::Stdout => "stdout",
            Sink::Lines(_) => "lines",
        };
        f.debug_struct("Context")
            .field("tenant", &self.0.tenant)
            .field("sink", &sink)
            .finish()
    }
}

#[derive(Default)]
struct ContextInner {
    tenant: Option<String>,
    sink: Sink,
}

impl Context {
    pub fn new(tenant: &str, sink: Sink) -> Context {
        Context(Arc::new(ContextInner {
            tenant: Some(tenant.to_string()),
            sink,
        }))
    }

    /// The tenant named on every line, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }

    /// Writes one line for `event` with `fields` (a JSON object; other
    /// values add nothing). See [`emit`].
    pub fn emit(&self, level: Level, event: &str, fields: Value) {
        self.write(&mut line_bytes(
            self.tenant(),
            level,
            event,
            &fields_of(&fields),
        ));
    }

    /// [`Context::emit`] for typed fields (see [`line_with`]).
    pub fn emit_with<T: Serialize + ?Sized>(&self, level: Level, event: &str, fields: &T) {
        self.write(&mut line_bytes(self.tenant(), level, event, fields));
    }

    /// [`Context::emit`] for fields that write themselves (see [`Fields`]).
    pub fn emit_fields<T: Fields + ?Sized>(&self, level: Level, event: &str, fields: &T) {
        LINE.with(|cell| {
            // Taken, not borrowed: nothing can observe it half-written.
            let mut line = cell.take();
            line_fields_into(&mut line, self.tenant(), level, event, fields);
            self.write(&mut line);
            if line.capacity() <= KEEP_LINE {
                cell.replace(line);
            }
        });
    }

    pub fn info(&self, event: &str, fields: Value) {
        self.emit(Level::Info, event, fields);
    }

    pub fn warn(&self, event: &str, fields: Value) {
        self.emit(Level::Warn, event, fields);
    }

    pub fn error(&self, event: &str, fields: Value) {
        self.emit(Level::Error, event, fields);
    }

    fn write(&self, line: &mut Vec<u8>) {
        match &self.0.sink {
            Sink::Stdout => queue(line),
            Sink::Lines(lines) => {
                let text = String::from_utf8_lossy(line).into_owned();
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(text);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// The keys every line starts with; `fields` cannot replace them.
const FIXED: [&str; 4] = ["ts", "level", "event", "tenant"];

/// A JSON object's entries without the fixed keys.
struct WithoutFixed<'a>(Option<&'a Map<String, Value>>);

impl Serialize for WithoutFixed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        let entries = self.0.into_iter().flatten();
        for (k, v) in entries.filter(|(k, _)| !FIXED.contains(&k.as_str())) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Builds the line for `event` with `fields` (a JSON object; other values are
/// ignored), as [`emit`] writes it (tests read lines through this).
#[cfg(test)]
pub(crate) fn line(level: Level, event: &str, fields: Value) -> String {
    text(line_bytes(None, level, event, &fields_of(&fields)))
}

/// Builds the line for `event` with the entries of `fields`, which must
/// serialize as a map without the fixed keys (the typed audit events), as
/// [`Context::emit_with`] writes it.
#[cfg(test)]
pub(crate) fn line_with<T: Serialize + ?Sized>(level: Level, event: &str, fields: &T) -> String {
    text(line_bytes(None, level, event, fields))
}

fn fields_of(fields: &Value) -> WithoutFixed<'_> {
    WithoutFixed(fields.as_object())
}

#[cfg(test)]
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// One line, written straight into one buffer (no intermediate JSON map),
/// ending in `}` without the newline.
fn line_bytes<T: Serialize + ?Sized>(
    tenant: Option<&str>,
    level: Level,
    event: &str,
    fields: &T,
) -> Vec<u8> {
    let mut out = head(tenant, level, event);
    let mark = out.len();
    push_json(&mut out, fields);
    // `{"a":1}` continues the line as `,"a":1}`; `{}` or a non-map adds nothing.
    if out.len() - mark > 2 && out[mark] == b'{' {
        out[mark] = b',';
    } else {
        out.truncate(mark);
        out.push(b'}');
    }
    out
}

/// The fixed keys a line starts with: `{"ts":…,"level":…,"event":…,"tenant":…`.
fn head(tenant: Option<&str>, level: Level, event: &str) -> Vec<u8> {
    // A message event is ~350-450 bytes: room for it without a regrowth.
    let mut out = Vec::with_capacity(640);
    head_into(&mut out, tenant, level, event);
    out
}

/// [`head`], appended to `out`.
fn head_into(out: &mut Vec<u8>, tenant: Option<&str>, level: Level, event: &str) {
    let _ = write!(
        out,
        "{{\"ts\":\"{}\",\"level\":\"{}\",\"event\":",
        humantime::format_rfc3339_millis(SystemTime::now()),
        level.as_str()
    );
    push_json(out, event);
    if let Some(t) = tenant {
        out.extend_from_slice(b",\"tenant\":");
        push_json(out, t);
    }
}

/// Fields that write themselves as JSON entries, for the events written
/// per message: serde's `flatten` goes through its generic map machinery
/// for every key, which was ~10% of the user-space instructions per
/// message (callgrind). The output is the same bytes as the `Serialize`
/// form (a test compares them).
pub trait Fields {
    /// Appends `,"key":value` for each field, in order.
    fn write_fields(&self, out: &mut Vec<u8>);
}

/// Appends `,"key":` and the JSON form of `value` (`key` is a plain
/// identifier, written as is).
pub fn push_field<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &T) {
    push_key(out, key);
    push_json(out, value);
}

/// [`push_field`] for a string: one that needs no escaping is copied as
/// is, any other goes through serde_json (the same bytes either way).
pub fn push_str_field(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    push_key(out, key);
    match value {
        // Checked without stopping early (the loop vectorizes).
        Some(v)
            if !v.bytes().fold(false, |esc, b| {
                esc | (b == b'"') | (b == b'\\') | (b < 0x20)
            }) =>
        {
            out.reserve(v.len() + 2);
            out.push(b'"');
            out.extend_from_slice(v.as_bytes());
            out.push(b'"');
        }
        Some(v) => push_json(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_key(out: &mut Vec<u8>, key: &str) {
    out.reserve(key.len() + 4);
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.push(b'"');
    out.push(b':');
}

#[cfg(test)]
fn line_fields<T: Fields + ?Sized>(level: Level, event: &str, fields: &T) -> Vec<u8> {
    let mut out = Vec::new();
    line_fields_into(&mut out, None, level, event, fields);
    out
}

/// [`line_fields`], into `out` (cleared first).
fn line_fields_into<T: Fields + ?Sized>(
    out: &mut Vec<u8>,
    tenant: Option<&str>,
    level: Level,
    event: &str,
    fields: &T,
) {
    out.clear();
    head_into(out, tenant, level, event);
    fields.write_fields(out);
    out.push(b'}');
}

/// Largest line buffer a thread keeps for the next line (bytes).
const KEEP_LINE: usize = 16 * 1024;

thread_local! {
    /// The buffer the per-message events are written into, one per thread
    /// (not per session) and reused: no allocation per line.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`line_fields`] as text (tests compare it with [`line_with`]).
#[cfg(test)]
pub(crate) fn line_of<T: Fields + ?Sized>(level: Level, event: &str, fields: &T) -> String {
    text(line_fields(level, event, fields))
}

/// Appends the JSON form of `value` (strings escaped by serde_json).
fn push_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Bytes waiting (queued, or in the write under way) from which the log is
/// congested: readiness 503, new transactions `451 4.3.0` (contract §6).
const MAX_PENDING: usize = 4 << 20;
/// Bytes waiting past which a line is dropped instead of queued; dropped
/// lines are counted (`smtpbind_log_lines_dropped_total`) and reported by a
/// `log_dropped` line once stdout takes lines again. Between the two
/// bounds only transactions already under way and refusals still log.
const MAX_HELD: usize = 16 << 20;
/// A write that has made no progress this long: stdout takes no more.
const STALL: std::time::Duration = std::time::Duration::from_secs(2);
/// The writer hands stdout at most this much per write, so progress shows.
const CHUNK: usize = 64 * 1024;
/// After writing a batch the writer lets more lines gather this long, so
/// under load one write (and one wake-up) carries many lines.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

struct Queue {
    pending: std::sync::Mutex<Vec<u8>>,
    /// The writer is parked and must be unparked by the next emitter.
    parked: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
    /// Bytes queued plus bytes of the batch being written.
    held: std::sync::atomic::AtomicUsize,
    /// When the chunk being written was handed to stdout (ms since
    /// [`base`], plus one; 0 while no write is under way).
    writing_since: std::sync::atomic::AtomicU64,
    /// Lines dropped past [`MAX_HELD`] not yet reported.
    dropped: std::sync::atomic::AtomicU64,
}

static QUEUE: Queue = Queue {
    pending: std::sync::Mutex::new(Vec::new()),
    parked: std::sync::atomic::AtomicBool::new(false),
    stop: std::sync::atomic::AtomicBool::new(false),
    held: std::sync::atomic::AtomicUsize::new(0),
    writing_since: std::sync::atomic::AtomicU64::new(0),
    dropped: std::sync::atomic::AtomicU64::new(0),
};

static WRITER: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> = std::sync::Mutex::new(None);
static WRITER_THREAD: OnceLock<Option<std::thread::Thread>> = OnceLock::new();

fn pending() -> std::sync::MutexGuard<'static, Vec<u8>> {
    QUEUE.pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// The monotonic origin of [`Queue::writing_since`].
fn base() -> std::time::Instant {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(base().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `Some(reason)` while stdout cannot take more: a write has made no
/// progress for [`STALL`], or [`MAX_PENDING`] bytes are waiting. Then no
/// new transaction may start (its audit line could not be written) and
/// the pod is not ready; `/healthz` is unaffected.
pub fn congested() -> Option<String> {
    use std::sync::atomic::Ordering;
    let held = QUEUE.held.load(Ordering::SeqCst);
    let since = QUEUE.writing_since.load(Ordering::SeqCst);
    let stalled_ms = match since {
        0 => 0,
        t => now_ms().saturating_sub(t - 1),
    };
    let stall_ms = u64::try_from(STALL.as_millis()).unwrap_or(u64::MAX);
    if stalled_ms >= stall_ms || held >= MAX_PENDING {
        Some(format!(
            "log: stdout takes no more ({held} bytes waiting, the write under way stalled {stalled_ms} ms)"
        ))
    } else {
        None
    }
}

/// Writes `batch` in chunks, marking each chunk's start (see [`congested`]).
fn write_batch(out: &mut impl Write, batch: &[u8]) {
    use std::sync::atomic::Ordering;
    for chunk in batch.chunks(CHUNK) {
        QUEUE
            .writing_since
            .store(now_ms().saturating_add(1), Ordering::SeqCst);
        let _ = out.write_all(chunk);
        let _ = out.flush();
        QUEUE.writing_since.store(0, Ordering::SeqCst);
        QUEUE.held.fetch_sub(chunk.len(), Ordering::SeqCst);
    }
}

/// The `log_dropped` line for lines dropped since the last report.
fn dropped_report() -> Option<Vec<u8>> {
    use std::sync::atomic::Ordering;
    let n = QUEUE.dropped.swap(0, Ordering::SeqCst);
    if n == 0 {
        return None;
    }
    // The writer is shared by the process: the report names no tenant.
    let mut line = line_bytes(
        None,
        Level::Error,
        "log_dropped",
        &fields_of(&serde_json::json!({ "lines": n, "reason": "stdout took no more" })),
    );
    line.push(b'\n');
    Some(line)
}

/// The writer thread: takes everything queued and writes it in one go.
fn write_loop() {
    use std::sync::atomic::Ordering;
    let stdout = std::io::stdout();
    loop {
        let batch = std::mem::take(&mut *pending());
        if batch.is_empty() {
            if QUEUE.stop.load(Ordering::SeqCst) {
                return;
            }
            QUEUE.parked.store(true, Ordering::SeqCst);
            // Re-check after announcing the park: an emitter that queued a
            // line before seeing `parked` would otherwise not wake us.
            if pending().is_empty() && !QUEUE.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            QUEUE.parked.store(false, Ordering::SeqCst);
            continue;
        }
        let mut lock = stdout.lock();
        write_batch(&mut lock, &batch);
        if let Some(report) = dropped_report() {
            QUEUE.held.fetch_add(report.len(), Ordering::SeqCst);
            write_batch(&mut lock, &report);
        }
        drop(lock);
        std::thread::sleep(GATHER);
    }
}

fn writer_thread() -> Option<&'static std::thread::Thread> {
    WRITER_THREAD
        .get_or_init(|| {
            let handle = std::thread::Builder::new()
                .name("smtpbind-log".into())
                .spawn(write_loop)
                .ok()?;
            let thread = handle.thread().clone();
            *WRITER.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
            Some(thread)
        })
        .as_ref()
}

/// Queues one line for stdout, naming no tenant (the tooling subcommands;
/// `smtpbind run` writes through its [`Context`]). Emitters never write to
/// stdout themselves and never wait: an async worker is never blocked by a
/// slow or stalled stdout (see [`congested`] for what refuses work
/// instead); a closed stdout is ignored.
pub fn emit(level: Level, event: &str, fields: Value) {
    queue(&mut line_bytes(None, level, event, &fields_of(&fields)));
}

fn queue(text: &mut Vec<u8>) {
    use std::sync::atomic::Ordering;
    text.push(b'\n');
    let Some(thread) = writer_thread().filter(|_| !QUEUE.stop.load(Ordering::SeqCst)) else {
        let mut lock = std::io::stdout().lock();
        let _ = lock.write_all(text);
        let _ = lock.flush();
        return;
    };
    {
        let mut queue = pending();
        if QUEUE.held.load(Ordering::SeqCst) >= MAX_HELD {
            drop(queue);
            QUEUE.dropped.fetch_add(1, Ordering::SeqCst);
            metrics::counter!("smtpbind_log_lines_dropped_total").increment(1);
            return;
        }
        queue.extend_from_slice(text);
        QUEUE.held.fetch_add(text.len(), Ordering::SeqCst);
    }
    if QUEUE.parked.swap(false, Ordering::SeqCst) {
        thread.unpark();
    }
}

/// How long [`finish`] waits for the writer to empty the queue.
const FINISH_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes every queued line and stops the writer (call before exit), waiting
/// at most [`FINISH_WITHIN`].
pub fn finish() {
    use std::sync::atomic::Ordering;
    QUEUE.stop.store(true, Ordering::SeqCst);
    if let Some(thread) = WRITER_THREAD.get().and_then(Option::as_ref) {
        thread.unpark();
    }
    let handle = WRITER.lock().unwrap_or_else(|p| p.into_inner()).take();
    // Bounded: a stalled stdout must not keep the process from exiting.
    let deadline = std::time::Instant::now() + FINISH_WITHIN;
    if let Some(handle) = handle {
        while !handle.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}

/// [`emit`] at info level.
pub fn info(event: &str, fields: Value) {
    emit(Level::Info, event, fields);
}

pub fn warn(event: &str, fields: Value) {
    emit(Level::Warn, event, fields);
}

pub fn error(event: &str, fields: Value) {
    emit(Level::Error, event, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_object_with_the_fixed_fields_first() {
        let l = line(
            Level::Warn,
            "reject",
            serde_json::json!({"reason": "bare_lf", "level": "spoofed"}),
        );
        let v: Value = serde_json::from_str(&l).expect("json");
        assert_eq!(v["event"], "reject");
        assert_eq!(v["level"], "warn", "fields cannot override the fixed keys");
        assert_eq!(v["reason"], "bare_lf");
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(!l.contains('\n'));
    }

    struct Two(&'static str, u64);

    impl Fields for Two {
        fn write_fields(&self, out: &mut Vec<u8>) {
            push_str_field(out, "name", Some(self.0));
            push_field(out, "n", &self.1);
        }
    }

    #[test]
    fn a_reused_line_buffer_holds_exactly_the_new_line() {
        let mut buf = b"{\"left over\":\"from a longer, earlier line\"}".repeat(4);
        line_fields_into(&mut buf, None, Level::Info, "message", &Two("a\"b", 7));
        let fresh = line_fields(Level::Info, "message", &Two("a\"b", 7));
        let after_ts = |l: &[u8]| {
            let l = std::str::from_utf8(l).expect("utf-8").to_string();
            l[l.find("\"level\"").expect("level")..].to_string()
        };
        assert_eq!(after_ts(&buf), after_ts(&fresh));
        let v: Value = serde_json::from_slice(&buf).expect("one JSON object");
        assert_eq!(v["name"], "a\"b");
        assert_eq!(v["n"], 7);
    }

    #[test]
    fn a_context_names_its_tenant_on_every_form_of_line_and_the_default_none() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let ctx = Context::new("acme", Sink::Lines(lines.clone()));
        ctx.info("a", serde_json::json!({ "k": 1 }));
        ctx.emit_with(Level::Warn, "b", &serde_json::json!({ "k": "v" }));
        ctx.emit_fields(Level::Error, "c", &Two("x", 2));
        let got: Vec<Value> = lines
            .lock()
            .expect("lines")
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(got.len(), 3);
        for (v, event) in got.iter().zip(["a", "b", "c"]) {
            assert_eq!(v["event"], event);
            assert_eq!(v["tenant"], "acme", "{v}");
        }
        assert_eq!(got[2]["n"], 2);
        // The tooling's context: no tenant key at all.
        let v: Value = serde_json::from_slice(&line_bytes(
            Context::default().tenant(),
            Level::Info,
            "x",
            &fields_of(&Value::Null),
        ))
        .expect("json");
        assert!(v.get("tenant").is_none(), "{v}");
        assert!(format!("{ctx:?}").contains("acme"));
    }
}
