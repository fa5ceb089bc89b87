//! The unit tests' random numbers: xorshift64 from a fixed seed, so a failing draw
//! replays the same way every run.

/// Draws below a bound: `draw(n)` is in `0..n`.
pub(crate) fn xorshift(mut state: u64) -> impl FnMut(u64) -> u64 {
    move |below| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    }
}
