//! Stager tests: hostile archives, and real stagings of the shipped buildpacks in real
//! containers (root needed, as for `paasd`).

mod archives;
mod staging;
