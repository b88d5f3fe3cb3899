#!/usr/bin/env python3
"""Write deploy/docker/seccomp-io_uring.json: a seccomp profile for aionbd
(Docker / OCI format) that denies every syscall but an allow-list: the
syscalls aionbd was seen making (deploy/check/aionbd-syscalls.txt, recorded
with strace over start, load, snapshot, reload, stop, recovery and
re-layout) plus the ones below, which a server like it can reach on paths
the recording did not cover (errors, disk full, other libc versions).
Run it again after the recording changes; scripts/check-deploy.sh checks
that the profile allows every recorded syscall and runs the server under it.
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
RECORDED = HERE.parent / "check" / "aionbd-syscalls.txt"

# Beyond the recording: memory, threads, signals, time, files, sockets.
MARGIN = """
exit exit_group wait4 kill tgkill clone clone3 futex futex_waitv set_robust_list get_robust_list rseq
mmap munmap mremap mprotect madvise brk mlock munlock membarrier
rt_sigaction rt_sigprocmask rt_sigreturn rt_sigtimedwait sigaltstack restart_syscall
nanosleep clock_nanosleep clock_gettime clock_getres gettimeofday
read write readv writev pread64 pwrite64 preadv pwritev lseek close close_range dup dup2 dup3 fcntl ioctl
openat open stat fstat lstat newfstatat statx statfs fstatfs access faccessat faccessat2 readlink readlinkat
getdents64 getcwd mkdir mkdirat rmdir unlink unlinkat rename renameat renameat2 flock fsync fdatasync
ftruncate fallocate sync_file_range umask
socket socketpair bind listen accept accept4 connect getsockname getpeername setsockopt getsockopt
sendto recvfrom sendmsg recvmsg shutdown poll ppoll epoll_create1 epoll_ctl epoll_wait epoll_pwait
eventfd2 pipe2 getrandom
getpid gettid getppid getuid geteuid getgid getegid uname sysinfo prlimit64 getrlimit
sched_getaffinity sched_setaffinity sched_yield prctl arch_prctl set_tid_address execve
io_uring_setup io_uring_enter io_uring_register
"""


def main() -> None:
    recorded = [
        line.strip()
        for line in RECORDED.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    names = sorted(set(recorded) | set(MARGIN.split()))
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": [
            {
                "names": names,
                "action": "SCMP_ACT_ALLOW",
                "comment": "aionbd's own allow-list (deploy/docker/make-seccomp.py), io_uring included",
            }
        ],
    }
    out = HERE / "seccomp-io_uring.json"
    out.write_text(json.dumps(profile, indent=2) + "\n")
    print(f"{out}: {len(names)} syscalls allowed")


if __name__ == "__main__":
    main()
