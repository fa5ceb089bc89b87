//! Process helpers the demo and the harness use: signals to the children they run, and
//! seeds. They come from the library's syscall layer through its test seams
//! (`tributary::testing`, the `testing` feature), so there is one audited copy.

pub use tributary::testing::sys::{random_u64, send_signal};
