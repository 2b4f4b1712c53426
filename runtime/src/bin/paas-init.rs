//! `paas-init` starts one container as the spec on its stdin says; `paas-init --exec
//! SPEC.json` runs a process in a running one. Run by `paasd`, not by people; see
//! `paas_runtime::init` for what it does.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.as_slice() {
        [] => paas_runtime::init::main(),
        [flag, spec] if flag == "--exec" => {
            paas_runtime::init::exec_main(std::path::Path::new(spec))
        }
        _ => {
            eprintln!(
                "usage: paas-init < SPEC | paas-init --exec SPEC.json\n\n\
                 paas-init starts containers for paasd; it is not meant to be run by hand."
            );
            std::process::exit(2);
        }
    }
}
