//! Packs `buildpacks/` into the binary, so `paasd` ships its buildpacks with it.

use std::path::Path;

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../buildpacks");
    println!("cargo:rerun-if-changed={}", src.display());
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("buildpacks.tar");
    let file = std::fs::File::create(&out).expect("creating buildpacks.tar");
    let mut tar = tar::Builder::new(file);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &src).expect("packing buildpacks/");
    tar.finish().expect("writing buildpacks.tar");
}
