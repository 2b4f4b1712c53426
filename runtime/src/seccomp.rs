//! The seccomp filter every container process runs under.
//!
//! A deny list on top of the other defences (no capabilities, `no_new_privs`): the
//! syscalls that reconfigure the kernel or escape a namespace fail with `EPERM`, as
//! Docker's and garden-runc's default profiles make them fail. `clone3` fails with
//! `ENOSYS`, so that libc falls back to `clone`, whose flags a filter can see (BPF cannot
//! read `clone3`'s flags, which are behind a pointer; runc does the same).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Syscalls refused outright.
const DENIED: &[(&str, libc::c_long)] = &[
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("bpf", libc::SYS_bpf),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
];

/// Namespace flags that `clone` may not be given.
const CLONE_NS_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// On x86_64 the same syscalls are reachable through the x32 ABI at `nr | 0x40000000`.
#[cfg(target_arch = "x86_64")]
const ABI_ALIASES: &[i64] = &[0, 0x4000_0000];
#[cfg(not(target_arch = "x86_64"))]
const ABI_ALIASES: &[i64] = &[0];

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| format!("seccomp: {e}"))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conds).map_err(|e| format!("seccomp: {e}"))
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch()?,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp: {e}"))
}

/// The filters, in the order to install them.
pub fn filters() -> Result<Vec<BpfProgram>, String> {
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for alias in ABI_ALIASES {
        for (_, nr) in DENIED {
            eperm.insert(alias | nr, vec![]);
        }
        // clone with any namespace flag.
        let clone_rules = CLONE_NS_FLAGS
            .iter()
            .map(|&f| rule(vec![cond(0, SeccompCmpOp::MaskedEq(f as u64), f as u64)?]))
            .collect::<Result<Vec<_>, _>>()?;
        eperm.insert(alias | libc::SYS_clone, clone_rules);
        // Packet sockets, and raw IPv4/IPv6 sockets (raw netlink stays: glibc's resolver
        // uses it to list interfaces).
        let type_mask = 0xf;
        let raw = libc::SOCK_RAW as u64;
        eperm.insert(
            alias | libc::SYS_socket,
            vec![
                rule(vec![cond(0, SeccompCmpOp::Eq, libc::AF_PACKET as u64)?])?,
                rule(vec![
                    cond(0, SeccompCmpOp::Eq, libc::AF_INET as u64)?,
                    cond(1, SeccompCmpOp::MaskedEq(type_mask), raw)?,
                ])?,
                rule(vec![
                    cond(0, SeccompCmpOp::Eq, libc::AF_INET6 as u64)?,
                    cond(1, SeccompCmpOp::MaskedEq(type_mask), raw)?,
                ])?,
            ],
        );
    }
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for alias in ABI_ALIASES {
        enosys.insert(alias | libc::SYS_clone3, vec![]);
    }
    Ok(vec![
        compile(eperm, libc::EPERM)?,
        compile(enosys, libc::ENOSYS)?,
    ])
}

/// Installs the filters on the calling thread. `no_new_privs` must be set first.
pub fn apply() -> Result<(), String> {
    for f in filters()? {
        seccompiler::apply_filter(&f).map_err(|e| format!("installing the seccomp filter: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_compile_for_this_architecture() {
        let f = super::filters().unwrap();
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|p| !p.is_empty()));
    }
}
