//! What the demo (`tributary demo`), the torture harness (`tributary-torture`) and their
//! tests share, so that there is ONE of each:
//!
//! - [`rng`]: the seeded random generator (schedules, payloads, batch sizes) and seed
//!   derivation;
//! - [`line`]: the exact bytes of every line a test writer appends, recomputable from
//!   the run's seed (so a checker knows each line, and a torn or altered one cannot pass);
//! - [`ack`]: the ack file, a writer's record of the lines it was told are durable;
//! - [`writer`]: the keyed writer loop (the `tributary demo-writer` and
//!   `tributary-torture writer` children) that appends lines and writes the ack file;
//! - [`check`]: the exactly-once checker of a target against the ack files.
//!
//! It is test tooling (`publish = false`): nothing here is part of tributary's API.

pub mod ack;
pub mod check;
pub mod line;
pub mod os;
pub mod rng;
pub mod writer;
