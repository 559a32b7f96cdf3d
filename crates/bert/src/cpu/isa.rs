//! The one CPU-feature detection of the kernels, and the capability tokens it hands out.
//!
//! A kernel compiled with `#[target_feature]` is `unsafe` to call because the CPU might not
//! have the instructions. Each such kernel here takes a token ([`Avx2Fma`], [`Avx512`],
//! [`Avx512Vnni`]) that only this module can make, and only after the detection found the
//! features: holding one is the proof its `SAFETY` comment cites. The detection runs once per
//! process ([`OnceLock`]); the `avx512` cargo feature (on by default) switches the AVX-512
//! kernels on, here and in `gemm`.

use std::sync::OnceLock;

/// What the CPU runs, read once.
#[derive(Debug, Clone, Copy, Default)]
struct Detected {
    avx2_fma: bool,
    avx512f: bool,
    avx512_vnni: bool,
}

fn detected() -> Detected {
    static DETECTED: OnceLock<Detected> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512f = cfg!(feature = "avx512") && std::is_x86_feature_detected!("avx512f");
            Detected {
                avx2_fma: std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma"),
                avx512f,
                avx512_vnni: avx512f
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Detected::default()
    })
}

/// Proof that the CPU has AVX2 and FMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Avx2Fma(());

/// Proof that the CPU has AVX-512F (and that the `avx512` feature is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Avx512(());

/// Proof that the CPU has AVX-512 F, BW and VNNI (and that the `avx512` feature is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Avx512Vnni(());

/// AVX2 + FMA, when the CPU has them.
pub(crate) fn avx2_fma() -> Option<Avx2Fma> {
    detected().avx2_fma.then_some(Avx2Fma(()))
}

/// AVX-512F, when the CPU has it and the `avx512` feature is on.
pub(crate) fn avx512() -> Option<Avx512> {
    detected().avx512f.then_some(Avx512(()))
}

/// AVX-512 with VNNI, when the CPU has it and the `avx512` feature is on.
pub(crate) fn avx512_vnni() -> Option<Avx512Vnni> {
    detected().avx512_vnni.then_some(Avx512Vnni(()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_follow_the_detection_and_wider_sets_imply_narrower_ones() {
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(
                super::avx2_fma().is_some(),
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            );
            assert_eq!(
                super::avx512().is_some(),
                cfg!(feature = "avx512") && std::is_x86_feature_detected!("avx512f")
            );
        }
        assert!(super::avx512_vnni().is_none() || super::avx512().is_some());
    }
}
