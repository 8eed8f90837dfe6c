//! Reading a `.safetensors` file tensor by tensor, each straight from the file into its own
//! buffer, f32 data into a vector the model can keep as it is ([`Stored`]).
//! `candle_core::safetensors::load` reads the whole file into memory first and copies each tensor
//! out of it, and taking a vector back out of a candle tensor copies it again, so loading
//! all-MiniLM-L6-v2 took far more than its 91 MB at its peak, in every process that searches
//! memory by meaning.
//!
//! The format: an 8-byte little-endian header length, a JSON header naming each tensor's
//! `dtype`, `shape` and `data_offsets` (from the end of the header), then the data.

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// The largest header read: far above any real model's (all-MiniLM-L6-v2's is 9 KB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Bytes read at a time when converting f32 data.
const CHUNK_BYTES: usize = 1 << 20;

/// One tensor's entry in the header.
#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// A tensor as read from the file.
#[derive(Debug)]
pub(super) enum Stored {
    /// f32 values, row-major, in a vector of their own: taken as they are, without a copy.
    F32 {
        /// The tensor's shape.
        shape: Vec<usize>,
        /// Its values.
        values: Vec<f32>,
    },
    /// Another type, as a candle tensor.
    Other(Tensor),
}

impl Stored {
    /// The tensor's shape.
    pub(super) fn shape(&self) -> &[usize] {
        match self {
            Stored::F32 { shape, .. } => shape,
            Stored::Other(tensor) => tensor.dims(),
        }
    }

    /// The values as f32, row-major (converted when stored as another type).
    pub(super) fn into_values(self) -> candle_core::Result<Vec<f32>> {
        match self {
            Stored::F32 { values, .. } => Ok(values),
            Stored::Other(tensor) => tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1(),
        }
    }

    /// The tensor, as f32 (converted when stored as another type).
    pub(super) fn into_tensor(self) -> candle_core::Result<Tensor> {
        match self {
            Stored::F32 { shape, values } => Tensor::from_vec(values, shape, &Device::Cpu),
            Stored::Other(tensor) => tensor.to_dtype(DType::F32),
        }
    }
}

/// The tensors of the safetensors file at `path`, by name. Errors say what is wrong with it.
pub(super) fn read(path: &Path) -> Result<HashMap<String, Stored>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let size = file.metadata().map_err(|e| format!("cannot read it: {e}"))?.len();
    let mut reader = BufReader::with_capacity(CHUNK_BYTES, file);
    let mut length = [0u8; 8];
    reader.read_exact(&mut length).map_err(|e| format!("no header ({e})"))?;
    let header_bytes = u64::from_le_bytes(length);
    if header_bytes > MAX_HEADER_BYTES || 8 + header_bytes > size {
        return Err(format!("a header of {header_bytes} bytes in a file of {size}"));
    }
    let mut header = vec![0u8; header_bytes as usize];
    reader.read_exact(&mut header).map_err(|e| format!("a cut header ({e})"))?;
    let mut entries: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("an unreadable header ({e})"))?;
    entries.remove("__metadata__");
    let data_start = 8 + header_bytes;
    let mut entries = entries
        .into_iter()
        .map(|(name, entry)| {
            let entry: Entry = serde_json::from_value(entry).map_err(|e| format!("tensor `{name}`: {e}"))?;
            Ok((name, entry))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // In file order: one forward pass over the data.
    entries.sort_by_key(|(_, entry)| entry.data_offsets[0]);
    let mut tensors = HashMap::with_capacity(entries.len());
    for (name, entry) in entries {
        let tensor = read_tensor(&mut reader, data_start, size, &entry)
            .map_err(|e| format!("tensor `{name}`: {e}"))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

/// Reads one tensor's data: f32 converted a chunk at a time into the tensor's own buffer, other
/// types as their bytes.
fn read_tensor(
    reader: &mut BufReader<File>,
    data_start: u64,
    size: u64,
    entry: &Entry,
) -> Result<Stored, String> {
    let dtype = match entry.dtype.as_str() {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "U32" => DType::U32,
        "U8" => DType::U8,
        other => return Err(format!("its type is {other}, which is not read here")),
    };
    let count: usize = entry.shape.iter().product();
    let [begin, end] = entry.data_offsets;
    let bytes = count.checked_mul(dtype.size_in_bytes()).ok_or("its shape overflows")?;
    if end < begin || end - begin != bytes as u64 || data_start + end > size {
        return Err(format!(
            "its data at {begin}..{end} is not the {bytes} bytes of {:?} {} in a file of {size} bytes",
            entry.shape, entry.dtype
        ));
    }
    reader.seek(SeekFrom::Start(data_start + begin)).map_err(|e| e.to_string())?;
    match dtype {
        DType::F32 => {
            let mut values = Vec::with_capacity(count);
            let mut chunk = vec![0u8; CHUNK_BYTES.min(bytes)];
            let mut left = bytes;
            while left > 0 {
                let piece = &mut chunk[..left.min(CHUNK_BYTES)];
                reader.read_exact(piece).map_err(|e| format!("the file is cut short ({e})"))?;
                values.extend(piece.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                left -= piece.len();
            }
            Ok(Stored::F32 { shape: entry.shape.clone(), values })
        }
        _ => {
            let mut raw = vec![0u8; bytes];
            reader.read_exact(&mut raw).map_err(|e| format!("the file is cut short ({e})"))?;
            let tensor = Tensor::from_raw_buffer(&raw, dtype, &entry.shape, &Device::Cpu);
            tensor.map(Stored::Other).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A safetensors file of `tensors` (name, dtype, shape, bytes), its header as `header` when given.
    fn file(
        dir: &Path,
        tensors: &[(&str, &str, &[usize], Vec<u8>)],
        header: Option<&str>,
    ) -> std::path::PathBuf {
        let mut offset = 0;
        let mut entries = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            entries.insert(
                (*name).to_owned(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
            );
            offset += bytes.len();
            data.extend_from_slice(bytes);
        }
        entries.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let header = header.map_or_else(|| serde_json::Value::Object(entries).to_string(), str::to_owned);
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&data);
        let path = dir.join("model.safetensors");
        std::fs::write(&path, out).unwrap();
        path
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn tensors_read_one_by_one_equal_candles_whole_file_read() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<f32> = (0..(CHUNK_BYTES / 4 * 2 + 7)).map(|i| i as f32 * 0.5 - 3.0).collect();
        let path = file(
            dir.path(),
            &[
                ("b", "F32", &[2, 3], f32_bytes(&[1.0, -2.5, 3.25, f32::MIN_POSITIVE, 0.0, -0.0])),
                ("a", "F32", &[big.len()], f32_bytes(&big)),
                ("h", "F16", &[2], vec![0x00, 0x3c, 0x00, 0xc0]),
                ("ids", "I64", &[2], [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ],
            None,
        );
        let ours = read(&path).unwrap();
        let candles = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(ours.len(), 4);
        let mut ours = ours;
        for (name, theirs) in &candles {
            let stored = ours.remove(name).unwrap();
            assert_eq!(stored.shape(), theirs.dims(), "{name}");
            let f32_kept = matches!(stored, Stored::F32 { .. });
            assert_eq!(f32_kept, theirs.dtype() == DType::F32, "{name}: f32 kept as a vector of its own");
            let mine = match stored {
                Stored::F32 { .. } => stored.into_tensor().unwrap(),
                Stored::Other(tensor) => tensor,
            };
            assert_eq!(mine.dtype(), theirs.dtype(), "{name}");
            let (a, b) = (mine.to_dtype(DType::F64).unwrap(), theirs.to_dtype(DType::F64).unwrap());
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            );
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{name}");
        }
    }

    #[test]
    fn a_damaged_file_is_refused_saying_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), &[("w", "F32", &[4], f32_bytes(&[1.0; 3]))], None);
        assert!(read(&path).unwrap_err().contains("tensor `w`: its data at 0..12 is not the 16 bytes"));
        let path = file(dir.path(), &[("w", "F8_E5M2", &[1], vec![0; 1])], None);
        assert!(read(&path).unwrap_err().contains("its type is F8_E5M2"));
        let path = file(dir.path(), &[], Some("{not json"));
        assert!(read(&path).unwrap_err().contains("an unreadable header"));
        std::fs::write(&path, [0xff; 12]).unwrap();
        assert!(read(&path).unwrap_err().contains("a header of"));
        // Data offsets past the end of the file.
        let header = r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#;
        let path = file(dir.path(), &[], Some(header));
        assert!(read(&path).unwrap_err().contains("in a file of"));
    }
}
