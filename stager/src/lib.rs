//! Staging: turning an app's source package into a droplet with buildpacks.
//!
//! - [`archive`] unpacks untrusted tar.gz uploads without letting any entry escape;
//! - [`buildpack`] finds buildpacks and tells their dialect from their files;
//! - [`lifecycle`] runs the buildpacks, each step in its own staging container;
//! - [`droplet`] packs the result in the droplet format of DESIGN.md.
//!
//! Each buildpack step is its own container (rather than one long-lived container driven
//! by a program inside it) so that the stager sees every step's exit code and output
//! directly, and nothing of the platform has to be copied into the container.
#![forbid(unsafe_code)]

pub mod archive;
pub mod buildpack;
pub mod cnb;
pub mod droplet;
pub mod lifecycle;
pub mod shell;
pub mod tree;

pub use archive::{ArchiveError, ArchivePolicy};
pub use buildpack::{Buildpack, BuildpackError, Dialect};
pub use lifecycle::{Stager, StagingError, StagingRequest, StagingResult};
