//! `paas-init CONTAINER_DIR` starts one container as the spec on its stdin says (the
//! folder only names the container in `ps`); `paas-init --exec
//! SPEC.json` runs a process in a running one. Run by `paasd`, not by people; see
//! `paas_runtime::init` for what it does.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.as_slice() {
        [dir] if dir != "--exec" => paas_runtime::init::main(),
        [flag, spec] if flag == "--exec" => {
            paas_runtime::init::exec_main(std::path::Path::new(spec))
        }
        _ => {
            eprintln!(
                "usage: paas-init CONTAINER_DIR < SPEC | paas-init --exec SPEC.json\n\n\
                 paas-init starts containers for paasd; it is not meant to be run by hand."
            );
            std::process::exit(2);
        }
    }
}
