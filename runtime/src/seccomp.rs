//! The seccomp filter every container process runs under.
//!
//! A deny list on top of the other defences (no capabilities, `no_new_privs`): the
//! syscalls that reconfigure the kernel or escape a namespace fail with `EPERM`, as
//! Docker's and garden-runc's default profiles make them fail. `clone3` fails with
//! `ENOSYS`, so that libc falls back to `clone`, whose flags a filter can see (BPF cannot
//! read `clone3`'s flags, which are behind a pointer; runc does the same).
//!
//! The program is written out here rather than generated: one short classic-BPF program
//! with a single shared `EPERM` exit. Its length matters at every container start: the
//! kernel checks, translates and JIT-compiles it, then runs it once for every syscall
//! number to find the ones it may skip (`seccomp_cache_prepare`). Installing the program
//! seccompiler generated (a comparison chain per syscall, the x32 aliases listed again)
//! took about 0.3 ms; this one takes about 0.1 ms (the `seccomp` call's duration, traced
//! with bpftrace).
#![allow(unsafe_code)]

/// Syscalls refused outright.
const DENIED: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_open_by_handle_at,
    libc::SYS_perf_event_open,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_userfaultfd,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
];

/// Namespace flags that `clone` may not be given.
const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

/// The architecture the filter is for (`AUDIT_ARCH_*`): a syscall made through another
/// ABI (such as 32-bit `int 0x80` on x86_64) has other numbers and is refused.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// On x86_64 the x32 ABI reaches the same syscalls at `nr | 0x40000000`. Nothing on the
/// platform uses it, so all of it is refused rather than each alias listed.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_SYSCALL_BIT: Option<u32> = None;

// Offsets into `struct seccomp_data`: nr (u32), arch (u32), ip (u64), args (u64 × 6). The
// low 32 bits of an argument are at its offset on the little-endian targets above.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0: u32 = 16;
const ARG1: u32 = 24;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Builds a program whose jumps name labels; [`Program::finish`] turns them into the
/// relative offsets BPF wants.
struct Program {
    code: Vec<(u16, Target, Target, u32)>,
    labels: Vec<Option<usize>>,
}

#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

impl Program {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((code, Target::Next, Target::Next, k));
    }
    /// Jumps to `to` when the test holds, goes on otherwise.
    fn jump_if(&mut self, code: u16, k: u32, to: usize) {
        self.code.push((code, Target::Label(to), Target::Next, k));
    }
    fn finish(self) -> Vec<libc::sock_filter> {
        let offset = |at: usize, t: Target| -> u8 {
            match t {
                Target::Next => 0,
                Target::Label(l) => {
                    let to = self.labels[l].expect("every label is placed");
                    // Only forward jumps of fewer than 256 instructions exist in BPF; the
                    // program below is far shorter, and `filter_is_short` checks it.
                    u8::try_from(to - at - 1).expect("a jump fits in 8 bits")
                }
            }
        };
        self.code
            .iter()
            .enumerate()
            .map(|(at, &(code, jt, jf, k))| libc::sock_filter {
                code,
                jt: offset(at, jt),
                jf: offset(at, jf),
                k,
            })
            .collect()
    }
}

/// The filter program.
pub fn program() -> Vec<libc::sock_filter> {
    let mut p = Program {
        code: Vec::new(),
        labels: Vec::new(),
    };
    let (eperm, clone, socket, inet, enosys) =
        (p.label(), p.label(), p.label(), p.label(), p.label());
    let right_arch = p.label();

    p.op(LD_W_ABS, ARCH);
    p.jump_if(JEQ, AUDIT_ARCH, right_arch);
    p.op(RET, KILL);
    p.place(right_arch);
    p.op(LD_W_ABS, NR);
    if let Some(bit) = X32_SYSCALL_BIT {
        p.jump_if(JGE, bit, eperm);
    }
    for &nr in DENIED {
        p.jump_if(JEQ, nr as u32, eperm);
    }
    p.jump_if(JEQ, libc::SYS_clone as u32, clone);
    p.jump_if(JEQ, libc::SYS_socket as u32, socket);
    p.jump_if(JEQ, libc::SYS_clone3 as u32, enosys);
    p.op(RET, ALLOW);

    // clone with any namespace flag.
    p.place(clone);
    p.op(LD_W_ABS, ARG0);
    p.jump_if(JSET, CLONE_NS_FLAGS, eperm);
    p.op(RET, ALLOW);

    // Packet sockets, and raw IPv4/IPv6 sockets (raw netlink stays: glibc's resolver uses
    // it to list interfaces).
    p.place(socket);
    p.op(LD_W_ABS, ARG0);
    p.jump_if(JEQ, libc::AF_PACKET as u32, eperm);
    p.jump_if(JEQ, libc::AF_INET as u32, inet);
    p.jump_if(JEQ, libc::AF_INET6 as u32, inet);
    p.op(RET, ALLOW);
    p.place(inet);
    p.op(LD_W_ABS, ARG1);
    // The type's low bits; SOCK_NONBLOCK and SOCK_CLOEXEC sit above them.
    p.op(AND, 0xf);
    p.jump_if(JEQ, libc::SOCK_RAW as u32, eperm);
    p.op(RET, ALLOW);

    p.place(enosys);
    p.op(RET, ENOSYS);
    p.place(eperm);
    p.op(RET, EPERM);
    p.finish()
}

/// Installs the filter on the calling thread. `no_new_privs` must be set first.
pub fn apply() -> Result<(), String> {
    let mut code = program();
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `code`, which outlives the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(format!(
            "installing the seccomp filter: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_is_short() {
        let len = super::program().len();
        assert!(len < 64, "the filter grew to {len} instructions");
    }

    /// Installs the filter in a forked child and reports what a few syscalls return there:
    /// refused ones fail with the errno the filter picks, others still work.
    #[test]
    fn refuses_what_it_lists_and_allows_the_rest() {
        use libc::*;
        // (what, syscall, its first three arguments, the errno expected, 0 for success)
        let probes: [(&str, c_long, [c_long; 3], i32); 8] = [
            ("unshare", SYS_unshare, [CLONE_NEWNS as c_long, 0, 0], EPERM),
            (
                "clone with CLONE_NEWUSER",
                SYS_clone,
                [(CLONE_NEWUSER | SIGCHLD) as c_long, 0, 0],
                EPERM,
            ),
            ("clone3", SYS_clone3, [0, 0, 0], ENOSYS),
            (
                "packet socket",
                SYS_socket,
                [AF_PACKET as c_long, SOCK_RAW as c_long, 0],
                EPERM,
            ),
            (
                "raw IPv4 socket",
                SYS_socket,
                [AF_INET as c_long, (SOCK_RAW | SOCK_CLOEXEC) as c_long, 1],
                EPERM,
            ),
            (
                "TCP socket",
                SYS_socket,
                [AF_INET6 as c_long, SOCK_STREAM as c_long, 0],
                0,
            ),
            (
                "unix socket",
                SYS_socket,
                [AF_UNIX as c_long, SOCK_STREAM as c_long, 0],
                0,
            ),
            ("getpid", SYS_getpid, [0, 0, 0], 0),
        ];
        for (what, nr, [a, b, c], errno) in probes {
            // SAFETY: the child makes raw syscalls only and leaves with _exit, so nothing
            // in it depends on the test harness's other threads. A clone that the filter
            // failed to refuse makes a grandchild, which returns 0 and exits the same way.
            let status = unsafe {
                let pid = fork();
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    if super::apply().is_err() {
                        _exit(100);
                    }
                    let r = syscall(nr, a, b, c);
                    _exit(if r < 0 { *__errno_location() } else { 0 });
                }
                let mut status = 0;
                waitpid(pid, &mut status, 0);
                status
            };
            assert!(WIFEXITED(status), "{what}: the child did not exit");
            assert_eq!(WEXITSTATUS(status), errno, "{what}");
        }
    }
}
