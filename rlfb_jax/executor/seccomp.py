"""A seccomp filter for job processes, built with ctypes (no libseccomp binding needed).

The filter is a short classic-BPF program: every system call in `DENIED` fails with EPERM,
``clone`` fails with EPERM when it asks for a new namespace, and ``clone3`` fails with
ENOSYS (its flags sit in memory a filter can't read; glibc then falls back to ``clone``,
which the filter can check). Everything else is allowed. What the denials stop:

* user namespaces (``unshare``, ``clone`` with CLONE_NEW*, ``setns``): a job can't become
  "root" of a namespace of its own and mount things or reach kernel code paths meant for
  privileged users;
* kernel keyrings (``add_key``, ``keyctl``, ``request_key``): keys are per uid and would
  outlive the job;
* System V IPC and POSIX message queues: segments, queues and semaphores outlive the process
  that made them and bypass its address-space limit;
* ``ptrace`` and ``process_vm_readv/writev``: no reading or steering of other processes;
* mounts, ``pivot_root``, ``chroot``, ``bpf``, ``perf_event_open``, ``userfaultfd``,
  io_uring, kexec and module loading: attack surface no test needs.

Only x86-64 is supported (the filter checks the architecture, and rejects the x32 ABI);
`available()` says why not elsewhere. The filter is built once, before the zygote forks, and
installed in each job process after its privileges are dropped (``no_new_privs`` first, as
the kernel requires for an unprivileged filter).
"""

from __future__ import annotations

import ctypes
import errno
import platform

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06

CLONE = 56
CLONE3 = 435
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME (0x80)
NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
NAMESPACE_FLAGS |= 0x20000000 | 0x40000000 | 0x00000080

# x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
DENIED = {
    "shmget": 29,
    "shmat": 30,
    "shmctl": 31,
    "semget": 64,
    "semop": 65,
    "semctl": 66,
    "shmdt": 67,
    "msgget": 68,
    "msgsnd": 69,
    "msgrcv": 70,
    "msgctl": 71,
    "ptrace": 101,
    "syslog": 103,
    "pivot_root": 155,
    "chroot": 161,
    "acct": 163,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "semtimedop": 220,
    "mq_open": 240,
    "mq_unlink": 241,
    "mq_timedsend": 242,
    "mq_timedreceive": 243,
    "mq_notify": 244,
    "mq_getsetattr": 245,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
}


class _Insn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def available() -> str | None:
    """None when a filter can be built here, else why not."""
    if platform.machine() != "x86_64":
        return f"the filter's system call table is for x86-64, not {platform.machine()}"
    return None


def program() -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions. Jumps are relative and forward; the
    last three instructions are: allow, deny with EPERM, deny with ENOSYS."""
    body: list[tuple[int, str | int, str | int, int]] = [
        (LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (JEQ_K, 0, "eperm", AUDIT_ARCH_X86_64),
        (LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (JGE_K, "eperm", 0, X32_SYSCALL_BIT),
        (JEQ_K, "enosys", 0, CLONE3),
    ]
    body += [(JEQ_K, "eperm", 0, nr) for nr in sorted(DENIED.values())]
    body += [
        (JEQ_K, 0, "allow", CLONE),
        (LD_W_ABS, 0, 0, 16),  # low 32 bits of args[0]: clone's flags
        (JSET_K, "eperm", "allow", NAMESPACE_FLAGS),
    ]
    targets = {"allow": len(body), "eperm": len(body) + 1, "enosys": len(body) + 2}
    insns = []
    for i, (code, jt, jf, k) in enumerate(body):
        jt = targets[jt] - i - 1 if isinstance(jt, str) else jt
        jf = targets[jf] - i - 1 if isinstance(jf, str) else jf
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError("seccomp filter jump out of range")
        insns.append((code, jt, jf, k))
    insns += [
        (RET_K, 0, 0, RET_ALLOW),
        (RET_K, 0, 0, RET_ERRNO | errno.EPERM),
        (RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),
    ]
    return insns


class Filter:
    """A filter prepared in the zygote (so that installing it after fork allocates nothing)."""

    def __init__(self) -> None:
        insns = program()
        self._insns = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
        self._prog = _Prog(len(insns), self._insns)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = self._libc.prctl

    def install(self) -> None:
        """Apply to the calling process (and everything it creates later); irreversible."""
        one = ctypes.c_ulong(1)
        if self._prctl(PR_SET_NO_NEW_PRIVS, one, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        mode = ctypes.c_ulong(SECCOMP_MODE_FILTER)
        if self._prctl(PR_SET_SECCOMP, mode, ctypes.byref(self._prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
