//! The seccomp filter every container process runs under.
//!
//! A deny list on top of the other defences (no capabilities, `no_new_privs`): the
//! syscalls that reconfigure the kernel, escape a namespace or reach kernel code that
//! keeps yielding privilege escalations fail with `EPERM`, as Docker's and garden-runc's
//! default profiles make them fail. `clone3` fails with `ENOSYS`, so that libc falls back
//! to `clone`, whose flags a filter can see (BPF cannot read `clone3`'s flags, which are
//! behind a pointer; runc does the same). Three calls are judged by their arguments:
//! `clone` (no namespace flags), `personality` (only the values runc allows) and
//! `socket`/`socketpair`, for which the address families, types and protocols an app needs
//! are an allow list, shorter than the list of the others.
//!
//! The program is written out here rather than generated: one short classic-BPF program
//! with a single shared `EPERM` exit. Its length matters at every container start: the
//! kernel checks, translates and JIT-compiles it, then runs it once for every syscall
//! number to find the ones it may skip (`seccomp_cache_prepare`). Installing the program
//! seccompiler generated (a comparison chain per syscall, the x32 aliases listed again)
//! took about 0.3 ms; this one takes about 0.1 ms (the `seccomp` call's duration, traced
//! with bpftrace). Adding io_uring and the others, the socket allow list and the
//! `personality` check took it from 52 instructions to 71 (`filter_is_short` prints the
//! count) and its install from about 0.10 ms to 0.11 ms (the call timed in 2000 forked
//! children each).
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
    // io_uring reaches most of the kernel through its own paths, around the checks made
    // on the syscalls it stands in for (CVE-2022-29582, CVE-2023-2598, CVE-2024-0582);
    // Docker refuses it too, and runtimes that use it (libuv) fall back when it fails.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Compare and copy other processes' files and memory by pid: checkpointing and
    // debugging tools, as `ptrace` above.
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    // Watching whole filesystems (unprivileged since Linux 5.13).
    libc::SYS_fanotify_init,
    // The kernel's log: host addresses and other tenants' traces.
    libc::SYS_syslog,
];

/// Namespace flags that `clone` may not be given.
const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

/// `personality` values allowed, as in runc's and Docker's profiles: `0xffffffff` only
/// reads the persona, and the others are subsets of `PER_LINUX32 | UNAME26`. Anything
/// else is refused, chiefly `READ_IMPLIES_EXEC` (every readable mapping executable) and
/// `ADDR_NO_RANDOMIZE` (no ASLR for the programs the process runs next), which undo
/// exploit mitigations.
const PERSONA_QUERY: u32 = 0xffff_ffff;
const PERSONA_ALLOWED_BITS: u32 = 0x0008 | 0x0002_0000;

/// Socket address families allowed. Each other family has its own kernel code, most of
/// it loaded as a module at its first use, and there are the holes: AF_VSOCK
/// (CVE-2021-26708), AF_ALG (CVE-2017-17805, CVE-2019-8912), AF_RDS (CVE-2010-3904),
/// AF_TIPC (CVE-2021-43267), AF_CAN (CVE-2021-3609), AF_BLUETOOTH, AF_X25, AF_AX25,
/// AF_NETROM, AF_ROSE, AF_DECnet, AF_ATMPVC, AF_ATMSVC, AF_IRDA, AF_PPPOX (CVE-2014-4943),
/// AF_LLC, AF_IEEE802154, AF_PHONET, AF_CAIF, AF_NFC, AF_KCM, AF_QIPCRTR, AF_SMC, AF_XDP,
/// AF_MCTP; and AF_PACKET (raw frames, CVE-2020-14386).
/// Apps need Unix, IPv4 and IPv6 sockets, and netlink for glibc's resolver and interface
/// lists (`getaddrinfo` with `AI_ADDRCONFIG`, `getifaddrs`).
const AF_UNIX: u32 = libc::AF_UNIX as u32;
const AF_INET: u32 = libc::AF_INET as u32;
const AF_INET6: u32 = libc::AF_INET6 as u32;
const AF_NETLINK: u32 = libc::AF_NETLINK as u32;
/// The one netlink protocol allowed: the others are kernel subsystems of their own, and
/// asking for one that is not loaded loads its module (`net-pf-16-proto-N`; sock_diag,
/// xfrm, audit, generic netlink families).
const NETLINK_ROUTE: u32 = libc::NETLINK_ROUTE as u32;
/// IPv4 and IPv6 socket types allowed (the type's low bits; `SOCK_NONBLOCK` and
/// `SOCK_CLOEXEC` sit above them). Refused: `SOCK_RAW` (forged packets), `SOCK_DCCP`
/// (CVE-2017-6074), `SOCK_SEQPACKET` (only SCTP has it) and `SOCK_PACKET` (the kernel
/// turns it into an AF_PACKET socket).
const SOCK_STREAM: u32 = libc::SOCK_STREAM as u32;
const SOCK_DGRAM: u32 = libc::SOCK_DGRAM as u32;
/// IPv4 and IPv6 protocols allowed: the default (0), TCP, UDP and MPTCP, all built into
/// the kernel. Others are modules loaded at first use (`net-pf-2-proto-N-type-T`): SCTP
/// (CVE-2021-23133), L2TP (CVE-2016-10200), SMC. Ping sockets (`IPPROTO_ICMP`) are
/// refused with them; `net.ipv4.ping_group_range` refuses them in a new network namespace
/// anyway.
const INET_PROTOCOLS: [u32; 4] = [
    0,
    libc::IPPROTO_TCP as u32,
    libc::IPPROTO_UDP as u32,
    libc::IPPROTO_MPTCP as u32,
];

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
const ARG2: u32 = 32;

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
    /// Jumps to `yes` when the test holds, to `no` otherwise.
    fn branch(&mut self, code: u16, k: u32, yes: usize, no: usize) {
        self.code
            .push((code, Target::Label(yes), Target::Label(no), k));
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
    let (allow, eperm, enosys) = (p.label(), p.label(), p.label());
    let (clone, personality, socket, netlink, inet, inet_protocol) = (
        p.label(),
        p.label(),
        p.label(),
        p.label(),
        p.label(),
        p.label(),
    );
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
    p.jump_if(JEQ, libc::SYS_socketpair as u32, socket);
    p.jump_if(JEQ, libc::SYS_personality as u32, personality);
    p.jump_if(JEQ, libc::SYS_clone3 as u32, enosys);
    p.op(RET, ALLOW);

    // clone with any namespace flag.
    p.place(clone);
    p.op(LD_W_ABS, ARG0);
    p.branch(JSET, CLONE_NS_FLAGS, eperm, allow);

    // personality: the query, or a subset of the allowed bits. (The kernel reads its
    // argument as 32 bits.)
    p.place(personality);
    p.op(LD_W_ABS, ARG0);
    p.jump_if(JEQ, PERSONA_QUERY, allow);
    p.branch(JSET, !PERSONA_ALLOWED_BITS, eperm, allow);

    // socket and socketpair (same first three arguments): the allowed families...
    p.place(socket);
    p.op(LD_W_ABS, ARG0);
    p.jump_if(JEQ, AF_UNIX, allow);
    p.jump_if(JEQ, AF_NETLINK, netlink);
    p.jump_if(JEQ, AF_INET, inet);
    p.branch(JEQ, AF_INET6, inet, eperm);
    p.place(netlink);
    p.op(LD_W_ABS, ARG2);
    p.branch(JEQ, NETLINK_ROUTE, allow, eperm);
    // ...and for IPv4 and IPv6, the allowed types and protocols.
    p.place(inet);
    p.op(LD_W_ABS, ARG1);
    p.op(AND, 0xf);
    p.jump_if(JEQ, SOCK_STREAM, inet_protocol);
    p.branch(JEQ, SOCK_DGRAM, inet_protocol, eperm);
    p.place(inet_protocol);
    p.op(LD_W_ABS, ARG2);
    let (last, others) = INET_PROTOCOLS.split_last().expect("a protocol is allowed");
    for &protocol in others {
        p.jump_if(JEQ, protocol, allow);
    }
    p.branch(JEQ, *last, allow, eperm);

    p.place(allow);
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
    /// The program's length is paid at every container start (see the module's docs);
    /// `cargo test -p paas-runtime filter_is_short -- --nocapture` prints it.
    #[test]
    fn filter_is_short() {
        let len = super::program().len();
        println!("the seccomp filter has {len} instructions");
        assert!(len < 80, "the filter grew to {len} instructions");
    }

    /// Installs the filter in a forked child and reports what a few syscalls return there:
    /// refused ones fail with the errno the filter picks, others still work. The test runs
    /// as root, so without the filter most refused calls would succeed, or fail otherwise.
    #[test]
    fn refuses_what_it_lists_and_allows_the_rest() {
        use libc::*;
        const SOCK_DCCP: c_long = 6;
        const NETLINK_SOCK_DIAG: c_long = 4;
        const SYSLOG_ACTION_SIZE_BUFFER: c_long = 10;
        const ADDR_NO_RANDOMIZE: c_long = 0x0040000;
        const READ_IMPLIES_EXEC: c_long = 0x0400000;
        const PER_LINUX32: c_long = 0x0008;
        // socketpair's result lands here, in the child's copy of this memory.
        let mut pair = [0 as c_int; 2];
        let pair = pair.as_mut_ptr() as c_long;
        // (what, syscall, its first four arguments, the errno expected, 0 for success)
        let probes: [(&str, c_long, [c_long; 4], i32); 33] = [
            (
                "unshare",
                SYS_unshare,
                [CLONE_NEWNS as c_long, 0, 0, 0],
                EPERM,
            ),
            (
                "clone with CLONE_NEWUSER",
                SYS_clone,
                [(CLONE_NEWUSER | SIGCHLD) as c_long, 0, 0, 0],
                EPERM,
            ),
            ("clone3", SYS_clone3, [0, 0, 0, 0], ENOSYS),
            ("io_uring_setup", SYS_io_uring_setup, [1, 0, 0, 0], EPERM),
            ("io_uring_enter", SYS_io_uring_enter, [-1, 0, 0, 0], EPERM),
            (
                "io_uring_register",
                SYS_io_uring_register,
                [-1, 0, 0, 0],
                EPERM,
            ),
            ("kcmp", SYS_kcmp, [0, 0, 0, 0], EPERM),
            ("pidfd_getfd", SYS_pidfd_getfd, [-1, 0, 0, 0], EPERM),
            (
                "fanotify_init",
                SYS_fanotify_init,
                [0, O_RDONLY as c_long, 0, 0],
                EPERM,
            ),
            (
                "syslog",
                SYS_syslog,
                [SYSLOG_ACTION_SIZE_BUFFER, 0, 0, 0],
                EPERM,
            ),
            (
                "personality(ADDR_NO_RANDOMIZE)",
                SYS_personality,
                [ADDR_NO_RANDOMIZE, 0, 0, 0],
                EPERM,
            ),
            (
                "personality(READ_IMPLIES_EXEC)",
                SYS_personality,
                [READ_IMPLIES_EXEC, 0, 0, 0],
                EPERM,
            ),
            (
                "personality query",
                SYS_personality,
                [0xffff_ffff, 0, 0, 0],
                0,
            ),
            (
                "personality(PER_LINUX32)",
                SYS_personality,
                [PER_LINUX32, 0, 0, 0],
                0,
            ),
            (
                "packet socket",
                SYS_socket,
                [AF_PACKET as c_long, SOCK_RAW as c_long, 0, 0],
                EPERM,
            ),
            (
                "raw IPv4 socket",
                SYS_socket,
                [AF_INET as c_long, (SOCK_RAW | SOCK_CLOEXEC) as c_long, 1, 0],
                EPERM,
            ),
            (
                "vsock socket",
                SYS_socket,
                [AF_VSOCK as c_long, SOCK_STREAM as c_long, 0, 0],
                EPERM,
            ),
            (
                "AF_ALG socket",
                SYS_socket,
                [AF_ALG as c_long, SOCK_SEQPACKET as c_long, 0, 0],
                EPERM,
            ),
            (
                "TIPC socket",
                SYS_socket,
                [AF_TIPC as c_long, SOCK_RDM as c_long, 0, 0],
                EPERM,
            ),
            (
                "RDS socket",
                SYS_socket,
                [AF_RDS as c_long, SOCK_SEQPACKET as c_long, 0, 0],
                EPERM,
            ),
            (
                "DCCP socket",
                SYS_socket,
                [AF_INET as c_long, SOCK_DCCP, IPPROTO_DCCP as c_long, 0],
                EPERM,
            ),
            (
                "SCTP socket",
                SYS_socket,
                [
                    AF_INET6 as c_long,
                    SOCK_STREAM as c_long,
                    IPPROTO_SCTP as c_long,
                    0,
                ],
                EPERM,
            ),
            (
                "sock_diag netlink socket",
                SYS_socket,
                [
                    AF_NETLINK as c_long,
                    SOCK_RAW as c_long,
                    NETLINK_SOCK_DIAG,
                    0,
                ],
                EPERM,
            ),
            (
                "TIPC socketpair",
                SYS_socketpair,
                [AF_TIPC as c_long, SOCK_SEQPACKET as c_long, 0, pair],
                EPERM,
            ),
            (
                "TCP socket",
                SYS_socket,
                [AF_INET6 as c_long, SOCK_STREAM as c_long, 0, 0],
                0,
            ),
            (
                "IPv4 TCP socket",
                SYS_socket,
                [
                    AF_INET as c_long,
                    (SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC) as c_long,
                    IPPROTO_TCP as c_long,
                    0,
                ],
                0,
            ),
            (
                "IPv4 UDP socket",
                SYS_socket,
                [AF_INET as c_long, SOCK_DGRAM as c_long, 0, 0],
                0,
            ),
            (
                "IPv6 UDP socket",
                SYS_socket,
                [
                    AF_INET6 as c_long,
                    SOCK_DGRAM as c_long,
                    IPPROTO_UDP as c_long,
                    0,
                ],
                0,
            ),
            (
                "unix socket",
                SYS_socket,
                [AF_UNIX as c_long, SOCK_STREAM as c_long, 0, 0],
                0,
            ),
            (
                "unix socketpair",
                SYS_socketpair,
                [AF_UNIX as c_long, SOCK_STREAM as c_long, 0, pair],
                0,
            ),
            (
                "route netlink socket",
                SYS_socket,
                [
                    AF_NETLINK as c_long,
                    SOCK_RAW as c_long,
                    NETLINK_ROUTE as c_long,
                    0,
                ],
                0,
            ),
            ("getpid", SYS_getpid, [0, 0, 0, 0], 0),
            (
                "clone without namespaces",
                SYS_clone,
                [SIGCHLD as c_long, 0, 0, 0],
                0,
            ),
        ];
        let mut wrong = Vec::new();
        for (what, nr, [a, b, c, d], errno) in probes {
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
                    let r = syscall(nr, a, b, c, d);
                    _exit(if r < 0 { *__errno_location() } else { 0 });
                }
                let mut status = 0;
                waitpid(pid, &mut status, 0);
                status
            };
            assert!(WIFEXITED(status), "{what}: the child did not exit");
            let got = WEXITSTATUS(status);
            if got != errno {
                wrong.push(format!(
                    "{what}: expected {}, got {}",
                    std::io::Error::from_raw_os_error(errno),
                    std::io::Error::from_raw_os_error(got)
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
