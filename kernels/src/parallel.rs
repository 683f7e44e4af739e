//! Splitting a kernel's output across the threads of the current rayon pool.
//!
//! Kernels split work by whole output channels: each task writes a disjoint, contiguous block
//! of the output and reads shared inputs, so the split needs no locking and every output value
//! is computed by the same sequence of operations whatever the thread count (results are
//! bitwise identical on 1 thread and on many).
//!
//! The caller chooses the thread count by running the kernel inside a pool
//! (`rayon::ThreadPool::install`); outside one, rayon's global pool is used.

use rayon::prelude::*;

/// Fewest output channels worth a task of their own: below this the hand-off costs more than
/// the parallel work saves, and the micro-kernels' register tiles would be left half empty.
const MIN_CHANNELS_PER_TASK: usize = 16;

/// Threads the current pool offers a kernel.
pub fn current_threads() -> usize {
    rayon::current_num_threads()
}

/// Calls `f(first_channel, channels, block)` for disjoint blocks of whole channels of `out`
/// (`channels` channels of `channel_len` elements each), in parallel when the current pool has
/// more than one thread and there is enough work to share. Every block starts at a multiple of
/// `align` channels (the panel width of prepacked weights, so no panel is split).
pub(crate) fn for_channel_blocks<T: Send>(
    out: &mut [T],
    channels: usize,
    channel_len: usize,
    align: usize,
    f: &(dyn Fn(usize, usize, &mut [T]) + Sync),
) {
    debug_assert_eq!(out.len(), channels * channel_len);
    let tasks = current_threads().min(channels / MIN_CHANNELS_PER_TASK);
    if tasks <= 1 || channel_len == 0 {
        f(0, channels, out);
        return;
    }
    // Blocks are a whole number of register tiles, so no task ends on a sliver of one.
    let per_task = channels.div_ceil(tasks).next_multiple_of(align.max(1));
    out.par_chunks_mut(per_task * channel_len)
        .enumerate()
        .for_each(|(i, block)| f(i * per_task, block.len() / channel_len, block));
}
