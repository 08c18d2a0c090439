//! IDX reader (LeCun's MNIST format, also used by Fashion-MNIST), raw or gzip-compressed.
//!
//! Layout: magic `0x00 0x00 <type> <ndim>`, then `ndim` big-endian u32 sizes, then the data.
//! Only unsigned bytes (type 0x08) occur in these datasets, so only those are accepted.
use crate::error::{data_err, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads the whole file, transparently un-gzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| data_err(path, format!("corrupt or truncated gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file of unsigned bytes with the expected number of dimensions.
pub fn read_idx(path: &Path, expected_ndim: usize) -> Result<IdxArray> {
    let bytes = read_maybe_gz(path)?;
    if bytes.len() < 4 {
        return Err(data_err(path, format!("truncated: {} bytes, no IDX header", bytes.len())));
    }
    let (zero, dtype, ndim) = (&bytes[0..2], bytes[2], bytes[3] as usize);
    if zero != [0, 0] || dtype != 0x08 || ndim != expected_ndim {
        return Err(data_err(
            path,
            format!(
                "wrong magic number 0x{:02x}{:02x}{:02x}{:02x}: expected 0x000008{:02x} \
                 (IDX, unsigned bytes, {expected_ndim} dimensions)",
                bytes[0], bytes[1], bytes[2], bytes[3], expected_ndim
            ),
        ));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(data_err(path, "truncated: the header ends before its dimension sizes"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected: usize = dims.iter().product();
    let got = bytes.len() - header;
    if got != expected {
        let what = if got < expected { "truncated" } else { "too long" };
        return Err(data_err(
            path,
            format!("{what}: header {dims:?} needs {expected} data bytes, the file has {got}"),
        ));
    }
    let mut data = bytes;
    data.drain(..header);
    Ok(IdxArray { dims, data })
}

/// Writes an IDX file of unsigned bytes (used by tests and by tools that make small sets).
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> std::io::Result<()> {
    let mut out = vec![0u8, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    std::fs::write(path, out)
}
