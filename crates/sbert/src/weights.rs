//! Loading a safetensors file tensor by tensor.
//!
//! candle copies every tensor out of a memory map into its own storage, so mapping the file
//! saves nothing and, while loading, the mapped pages and the copies are resident together
//! (about twice the weights). Reading each tensor straight into its final buffer keeps the peak
//! at the size of the weights, and validates the file as it goes: a truncated or corrupt file is
//! an error naming the file and the tensor, never a panic.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The header entry of one tensor.
#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Headers beyond this size are rejected as corrupt (real ones are a few hundred KiB at most).
const MAX_HEADER: u64 = 100 << 20;

fn corrupt(path: &Path, msg: String) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        source: candle_core::Error::Msg(msg),
    }
}

fn dtype_of(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "U32" => DType::U32,
        "U8" => DType::U8,
        _ => return None,
    })
}

/// Reads every tensor of the safetensors file `path`, converted to `dtype` on `device`.
pub(crate) fn load(path: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let io = |source| crate::folder::io_error(path, source);
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| {
        corrupt(
            path,
            format!("file of {file_len} bytes has no safetensors header"),
        )
    })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || 8 + header_len > file_len {
        return Err(corrupt(
            path,
            format!("header length {header_len} does not fit a file of {file_len} bytes"),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let mut entries: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| corrupt(path, format!("invalid safetensors header: {e}")))?;
    entries.remove("__metadata__");
    let data_start = 8 + header_len;

    let mut tensors = HashMap::with_capacity(entries.len());
    for (name, value) in entries {
        let entry: Entry = serde_json::from_value(value)
            .map_err(|e| corrupt(path, format!("tensor {name}: invalid header entry: {e}")))?;
        let stored = dtype_of(&entry.dtype).ok_or_else(|| {
            corrupt(
                path,
                format!("tensor {name}: unsupported dtype {}", entry.dtype),
            )
        })?;
        let [start, end] = entry.data_offsets;
        let numel: usize = entry.shape.iter().product();
        let bytes = (numel * stored.size_in_bytes()) as u64;
        if end < start || end - start != bytes || data_start + end > file_len {
            return Err(corrupt(
                path,
                format!(
                    "tensor {name}: shape {:?} {} needs {bytes} bytes at [{start}, {end}) but the \
                     file has {} data bytes (truncated or corrupt)",
                    entry.shape,
                    entry.dtype,
                    file_len - data_start
                ),
            ));
        }
        file.seek(SeekFrom::Start(data_start + start)).map_err(io)?;
        let tensor = if stored == DType::F32 && cfg!(target_endian = "little") {
            // Read straight into the final f32 buffer: no second copy.
            let mut data = vec![0f32; numel];
            file.read_exact(bytemuck::cast_slice_mut(&mut data))
                .map_err(io)?;
            Tensor::from_vec(data, entry.shape, &Device::Cpu)?
        } else {
            let mut raw = vec![0u8; bytes as usize];
            file.read_exact(&mut raw).map_err(io)?;
            Tensor::from_raw_buffer(&raw, stored, &entry.shape, &Device::Cpu)?
        };
        let tensor = tensor.to_dtype(dtype)?.to_device(device)?;
        tensors.insert(name, tensor);
    }
    Ok(VarBuilder::from_tensors(tensors, dtype, device))
}
