//! CIFAR-10 / CIFAR-100 binary version reader (the `*-binary.tar.gz` releases).
//!
//! CIFAR-10 records: 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32).
//! CIFAR-100 records: 1 coarse + 1 fine label byte + 3072 pixel bytes; we use the fine label.
use crate::error::{data_err, Result};
use std::path::Path;

pub const CIFAR_PIXELS: usize = 3 * 32 * 32;

/// Reads one CIFAR binary file into (pixels [n*3072], labels [n]).
pub fn read_cifar_file(path: &Path, label_bytes: usize, classes: u8) -> Result<(Vec<u8>, Vec<u8>)> {
    let raw = super::read_bounded(path, super::MAX_CIFAR_FILE_BYTES, "CIFAR binary file")?;
    parse_cifar_bytes(&raw, path, label_bytes, classes)
}

/// [`read_cifar_file`] on the file's bytes; `path` only names the source in errors.
pub fn parse_cifar_bytes(
    raw: &[u8],
    path: &Path,
    label_bytes: usize,
    classes: u8,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let record = label_bytes + CIFAR_PIXELS;
    if raw.is_empty() || !raw.len().is_multiple_of(record) {
        return Err(data_err(
            path,
            format!(
                "size {} bytes is not a whole number of {record}-byte records \
                 (truncated, or not a CIFAR-{} binary file)",
                raw.len(),
                if label_bytes == 1 { "10" } else { "100" }
            ),
        ));
    }
    let n = raw.len() / record;
    let mut pixels = Vec::with_capacity(n * CIFAR_PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in raw.chunks_exact(record).enumerate() {
        let label = rec[label_bytes - 1];
        if label >= classes {
            return Err(data_err(
                path,
                format!("record {i}: label {label} out of range (expected < {classes})"),
            ));
        }
        labels.push(label);
        pixels.extend_from_slice(&rec[label_bytes..]);
    }
    Ok((pixels, labels))
}
