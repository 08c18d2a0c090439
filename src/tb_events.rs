//! A fallible TensorBoard event-file writer (the TFRecord framing of TensorFlow's
//! `tensorflow/core/lib/io/record_writer.cc`, events as in `tensorflow/core/util/event.proto`).
//!
//! tensorboard-rs's `EventFileWriter` writes on a background thread that `expect`s every
//! write: a full disk panics that thread, the next `send` panics the caller, and `Drop`
//! panics again while joining it (an abort when it happens during unwinding). This writer
//! does the same encoding synchronously, on the caller's thread, and returns every I/O error
//! with the file's path; dropping it never panics (BufWriter ignores a failed final flush,
//! which `flush` reports beforehand).
use protobuf::Message;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use tensorboard_proto::event::Event;
use tensorboard_proto::summary::Summary;
use tensorboard_rs::record_writer::RecordWriter;

pub struct EventWriter {
    path: PathBuf,
    records: RecordWriter<BufWriter<File>>,
    /// Stamps every event with this wall time instead of the clock's (outputs that must be
    /// byte-identical when recomputed: the grid's merge).
    fixed_time: Option<f64>,
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl EventWriter {
    /// Creates `dir` and a new `events.out.tfevents.<time>.<host>.<pid>.0` file in it (the
    /// name TensorBoard globs for), starting with the file-version event.
    pub fn new(dir: &Path) -> Result<EventWriter, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let secs = wall_time() as u64;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .unwrap_or_else(|| "localhost".into());
        let path =
            dir.join(format!("events.out.tfevents.{secs:010}.{host}.{}.0", std::process::id()));
        Self::at_path(&path)
    }

    /// An events file at exactly `path` (created or truncated).
    pub fn at_path(path: &Path) -> Result<EventWriter, String> {
        Self::open(path, None)
    }

    /// An events file at exactly `path` whose every event carries `wall_time`: the same
    /// summaries give the same bytes.
    pub fn at_path_fixed_time(path: &Path, wall_time: f64) -> Result<EventWriter, String> {
        Self::open(path, Some(wall_time))
    }

    fn open(path: &Path, fixed_time: Option<f64>) -> Result<EventWriter, String> {
        let path = path.to_path_buf();
        let file =
            File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut w =
            EventWriter { path, records: RecordWriter::new(BufWriter::new(file)), fixed_time };
        let mut ev = Event::new();
        ev.set_wall_time(w.now());
        ev.set_file_version("brain.Event:2".to_string());
        w.write_event(&ev)?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn now(&self) -> f64 {
        self.fixed_time.unwrap_or_else(wall_time)
    }

    fn io_err(&self, what: &str, e: impl std::fmt::Display) -> String {
        format!("cannot {what} TensorBoard events file {}: {e}", self.path.display())
    }

    fn write_event(&mut self, ev: &Event) -> Result<(), String> {
        let bytes = ev.write_to_bytes().map_err(|e| self.io_err("encode an event for", e))?;
        self.records.write(&bytes).map_err(|e| self.io_err("write", e))
    }

    /// Appends one summary at `step`, stamped with the current time.
    pub fn add_summary(&mut self, summary: Summary, step: usize) -> Result<(), String> {
        let mut ev = Event::new();
        ev.set_wall_time(self.now());
        ev.set_step(step as i64);
        ev.set_summary(summary);
        self.write_event(&ev)
    }

    pub fn flush(&mut self) -> Result<(), String> {
        self.records.flush().map_err(|e| self.io_err("flush", e))
    }
}
