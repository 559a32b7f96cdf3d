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
use safetensors::tensor::Metadata;

use crate::error::{Error, Result};

/// Headers beyond this size are rejected as corrupt (real ones are a few hundred KiB at most).
const MAX_HEADER: u64 = 100 << 20;

fn corrupt(path: &Path, msg: String) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        source: candle_core::Error::Msg(msg),
    }
}

fn dtype_of(dtype: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match dtype {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::F64 => DType::F64,
        S::I64 => DType::I64,
        S::U32 => DType::U32,
        S::U8 => DType::U8,
        _ => return None,
    })
}

/// Largest magnitude accepted in a weight. Trained transformer weights stay within tens
/// (all-MiniLM-L6-v2: 7.9); a value past this is a corrupted file (a flipped exponent bit),
/// and one such value can make every input produce the same vector.
const MAX_WEIGHT: f32 = 1e6;

/// Fails with [`Error::InvalidWeights`] naming the tensor when `values` holds a NaN, an
/// infinity or a magnitude beyond [`MAX_WEIGHT`].
fn check_values(path: &Path, name: &str, values: &[f32]) -> Result<()> {
    let valid = |v: &f32| v.abs() <= MAX_WEIGHT;
    if values.iter().all(valid) {
        return Ok(());
    }
    let first = values.iter().position(|v| !valid(v)).unwrap_or(0);
    Err(Error::InvalidWeights {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        count: values.iter().filter(|v| !valid(v)).count(),
        first,
        value: values[first],
    })
}

/// Reads every tensor of the safetensors file `path`, converted to `dtype` on `device`.
pub(crate) fn load(path: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    Ok(load_with_names(path, dtype, device)?.0)
}

/// [`load`], also returning the names of the tensors in the file.
pub(crate) fn load_with_names(
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<(VarBuilder<'static>, Vec<String>)> {
    let tensors = read_tensors(path, dtype, device, |_| true)?;
    let names = tensors.keys().cloned().collect();
    Ok((VarBuilder::from_tensors(tensors, dtype, device), names))
}

/// Reads the tensors of the safetensors file `path` whose names `keep` accepts (LayerNorm's old
/// `gamma`/`beta` names read as `weight`/`bias`), each straight into its buffer and checked
/// to be finite, as f32 on the CPU.
///
/// # Errors
/// A missing, truncated or corrupt file, a tensor that is not floating point, or a NaN or
/// infinite value (naming the file and the tensor).
pub fn read_safetensors(
    path: impl AsRef<Path>,
    keep: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Tensor>> {
    read_tensors(path.as_ref(), DType::F32, &Device::Cpu, keep)
}

fn read_tensors(
    path: &Path,
    dtype: DType,
    device: &Device,
    keep: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Tensor>> {
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
    // safetensors' own header type checks what its format promises: tensors laid out back to
    // back from offset 0 without gaps or overlaps, each exactly its shape × dtype in size.
    let metadata: Metadata = serde_json::from_slice(&header)
        .map_err(|e| corrupt(path, format!("invalid safetensors header: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = metadata.data_len() as u64;
    if data_start + data_len != file_len {
        return Err(corrupt(
            path,
            format!(
                "the header describes {data_len} data bytes but the file has {} (truncated or \
                 corrupt)",
                file_len - data_start
            ),
        ));
    }

    let infos = metadata.tensors();
    let mut tensors = HashMap::with_capacity(infos.len());
    for name in metadata.offset_keys() {
        if !keep(&name) {
            continue;
        }
        let info = infos[&name];
        let stored = dtype_of(info.dtype).ok_or_else(|| {
            corrupt(
                path,
                format!("tensor {name}: unsupported dtype {:?}", info.dtype),
            )
        })?;
        if !stored.is_float() {
            // Integer buffers (`embeddings.position_ids` in older checkpoints) are not weights.
            if name.ends_with("_ids") {
                continue;
            }
            return Err(corrupt(
                path,
                format!(
                    "tensor {name} has dtype {:?}; weights must be floating point",
                    info.dtype
                ),
            ));
        }
        let (start, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        let numel: usize = info.shape.iter().product();
        let entry_shape = info.shape.clone();
        file.seek(SeekFrom::Start(data_start + start)).map_err(io)?;
        let bytes = end - start;
        let tensor = if stored == DType::F32 && cfg!(target_endian = "little") {
            // Read straight into the final f32 buffer: no second copy.
            let mut data = vec![0f32; numel];
            file.read_exact(bytemuck::cast_slice_mut(&mut data))
                .map_err(io)?;
            check_values(path, &name, &data)?;
            Tensor::from_vec(data, entry_shape, &Device::Cpu)?
        } else {
            let mut raw = vec![0u8; bytes as usize];
            file.read_exact(&mut raw).map_err(io)?;
            let t = Tensor::from_raw_buffer(&raw, stored, &entry_shape, &Device::Cpu)?;
            let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            check_values(path, &name, &values)?;
            t
        };
        let tensor = tensor.to_dtype(dtype)?.to_device(device)?;
        tensors.insert(modern_name(&name), tensor);
    }
    Ok(tensors)
}

/// A LayerNorm parameter under TensorFlow's old names (`….gamma`, `….beta`, as some
/// checkpoints still store them, and transformers renames when it loads) under today's
/// (`….weight`, `….bias`); every other name as it is.
fn modern_name(name: &str) -> String {
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name.to_string()
    }
}

/// Fails when the file holds encoder layers beyond the config's `num_hidden_layers`
/// (`encoder.layer.N.…`, DistilBERT's `transformer.layer.N.…` or ModernBERT's `layers.N.…`
/// with N ≥ `layers`): the config does not describe these weights, and running a truncated
/// encoder would give different embeddings without a word.
pub(crate) fn check_layer_count(path: &Path, names: &[String], layers: usize) -> Result<()> {
    let deepest = names
        .iter()
        .filter_map(|name| {
            let (at, marker) = ["encoder.layer.", "transformer.layer.", "layers."]
                .into_iter()
                .find_map(|m| Some((name.find(m)?, m)))?;
            let rest = &name[at + marker.len()..];
            rest.split('.').next()?.parse::<usize>().ok()
        })
        .max();
    match deepest {
        Some(d) if d >= layers => Err(Error::Weights {
            path: path.to_path_buf(),
            source: candle_core::Error::Msg(format!(
                "the file holds {} encoder layers but config.json says num_hidden_layers = \
                 {layers}; layers {layers}..{} would go unused (fix num_hidden_layers)",
                d + 1,
                d
            )),
        }),
        _ => Ok(()),
    }
}
