//! `paas-init SPEC.json`: starts one container as the spec says. Run by `paasd`, not by
//! people; see `paas_runtime::init` for what it does.

fn main() {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        (Some(spec), None) => paas_runtime::init::main(std::path::Path::new(&spec)),
        _ => {
            eprintln!("usage: paas-init SPEC.json\n\npaas-init starts one container for paasd; it is not meant to be run by hand.");
            std::process::exit(2);
        }
    }
}
