//! Running a whole pass on rayon's pool with the other workers kept awake until it ends.
//!
//! A pass over one short text is some thirty parallel loops of a few microseconds each, with
//! a little sequential work (LayerNorm, attention over a handful of tokens) between them. Idle
//! rayon workers spin only briefly before they sleep on a futex, so each loop would otherwise
//! start by waking a sleeping worker (tens of microseconds on a virtual machine), and a short
//! text on two threads paid that some 24 times per call. While a pass runs, one task per
//! other worker instead keeps asking the pool for work ([`rayon::yield_now`]), as ONNX
//! Runtime's threads spin between operators; it returns when the pass ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A keep-awake task gives up after this long without finding work. A pass never idles this
/// long between its loops; the limit only bounds the spinning when a task lands where it
/// cannot help (on a thread whose own pass waits below it in the stack, when several callers
/// share the pool), so that it can never hold that pass up for longer.
const IDLE_LIMIT: Duration = Duration::from_micros(500);

/// `pass()` run on one of the current pool's threads, with every other worker of the pool
/// kept awake until it returns.
pub(crate) fn run_awake<R: Send>(pass: impl FnOnce() -> R + Send) -> R {
    let others = rayon::current_num_threads().saturating_sub(1);
    if others == 0 {
        return rayon::scope(|_| pass());
    }
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        // A task that ends up on the pass's own thread (popped there while the pass waits
        // below it) returns at once: spinning there would only hold the pass up.
        let home = rayon::current_thread_index();
        for _ in 0..others {
            let done = &done;
            scope.spawn(move |_| {
                if rayon::current_thread_index() != home {
                    keep_awake(done);
                }
            });
        }
        let out = pass();
        done.store(true, Ordering::Release);
        out
    })
}

/// Runs the pool's pending jobs until `done` is set or no job has come for [`IDLE_LIMIT`].
fn keep_awake(done: &AtomicBool) {
    let mut idle_since: Option<Instant> = None;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = None;
            continue;
        }
        if idle_since.get_or_insert_with(Instant::now).elapsed() > IDLE_LIMIT {
            return;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn a_pass_run_awake_returns_its_result_on_any_pool_size() {
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let sum = pool.install(|| {
                run_awake(|| {
                    (0..50)
                        .map(|round| (0..1000u64).into_par_iter().map(|v| v * round).sum::<u64>())
                        .sum::<u64>()
                })
            });
            assert_eq!(sum, 499_500 * (0..50).sum::<u64>(), "{threads} threads");
        }
    }

    #[test]
    fn passes_run_awake_from_several_callers_at_once_all_finish() {
        // Keep-awake tasks of one pass may land beside another pass (or below it on the same
        // thread); each pass must still finish.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let sums: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|k| {
                    let pool = &pool;
                    s.spawn(move || {
                        pool.install(|| {
                            run_awake(|| {
                                (0..20)
                                    .map(|_| {
                                        (0..500u64).into_par_iter().map(|v| v + k).sum::<u64>()
                                    })
                                    .sum::<u64>()
                            })
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("caller"))
                .collect()
        });
        for (k, sum) in (0..4u64).zip(sums) {
            assert_eq!(sum, 20 * (124_750 + 500 * k));
        }
    }
}
