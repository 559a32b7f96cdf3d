//! Device names as programs take them: `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.

use candle_core::Device;

use crate::error::{Error, Result};

/// The device `name` stands for: `cpu`, `cuda` (device 0), `cuda:N`, `metal` (device 0) or
/// `metal:N`, as the CLI's `--device` and Python's `device=` take it.
///
/// ```
/// assert!(sbert::device("cpu")?.is_cpu());
/// assert!(sbert::device("tpu").is_err());
/// # Ok::<(), sbert::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] for another name; [`Error::Candle`] when the device cannot be
/// opened (a build without the `cuda` or `metal` feature, or no such GPU).
pub fn device(name: &str) -> Result<Device> {
    let (kind, ordinal) = match name.split_once(':') {
        Some((kind, n)) => (
            kind,
            n.parse::<usize>().map_err(|_| {
                Error::InvalidArgument(format!("device {name:?}: {n:?} is not a device number"))
            })?,
        ),
        None => (name, 0),
    };
    match kind {
        "cpu" if ordinal == 0 => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(ordinal)?),
        "metal" => Ok(Device::new_metal(ordinal)?),
        _ => Err(Error::InvalidArgument(format!(
            "device {name:?}: expected cpu, cuda, cuda:N, metal or metal:N"
        ))),
    }
}
