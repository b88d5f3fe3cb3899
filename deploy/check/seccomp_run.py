#!/usr/bin/python3
"""Run a command under the seccomp filter of the systemd unit or of the Docker
profile, as an unprivileged user, to check that aionbd works under it.

  seccomp_run.py --unit deploy/systemd/aionbd.service [--user nobody] -- CMD...
  seccomp_run.py --docker-profile deploy/docker/seccomp-io_uring.json [--user nobody] -- CMD...

--unit: the allow list is what the unit's SystemCallFilter= lines give
(groups expanded by `systemd-analyze syscall-filter`, ~lines removed), every
other call fails with SystemCallErrorNumber= (EPERM), as systemd does.
--docker-profile: the rules as Docker applies them on x86_64 to a container
with no capabilities (rules that need a capability are skipped, rules that
exclude one apply; arch and minKernel conditions honoured).

Needs libseccomp's Python binding (Debian: python3-seccomp) and root (to
switch to --user). Only the filter is emulated: the unit's other sandboxing
(namespaces, read-only /usr, DynamicUser) and the container's are not.
"""
import errno
import json
import os
import platform
import pwd
import re
import subprocess
import sys

import seccomp


def expand(item, cache={}):
    """Syscall names of a systemd group (@name) or a single syscall."""
    if not item.startswith("@"):
        return {item}
    if item not in cache:
        out = subprocess.run(["systemd-analyze", "syscall-filter", item],
                             capture_output=True, text=True, check=True).stdout
        names = set()
        for line in out.splitlines()[1:]:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            names |= expand(line)
        cache[item] = names
    return cache[item]


def unit_filter(path):
    allow, deny, errno_name = None, set(), None
    for line in open(path):
        line = line.strip()
        m = re.match(r"SystemCallFilter=(.*)", line)
        if m:
            spec = m.group(1).split()
            if not spec:
                allow, deny = None, set()
            elif spec[0].startswith("~"):
                spec[0] = spec[0][1:]
                for s in spec:
                    deny |= expand(s)
            else:
                names = set()
                for s in spec:
                    names |= expand(s)
                allow = names if allow is None else allow | names
        m = re.match(r"SystemCallErrorNumber=(\w+)", line)
        if m:
            errno_name = m.group(1)
    if allow is None:
        sys.exit(f"{path}: no SystemCallFilter= allow list")
    default = (seccomp.ERRNO(getattr(errno, errno_name)) if errno_name
               else seccomp.KILL_PROCESS)
    f = seccomp.SyscallFilter(defaction=default)
    allowed = sorted(allow - deny)
    for name in allowed:
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a syscall on this architecture (systemd skips these too)
    return f, len(allowed)


OPS = {"SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT, "SCMP_CMP_LE": seccomp.LE,
       "SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_GE": seccomp.GE, "SCMP_CMP_GT": seccomp.GT,
       "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ}


def kernel_at_least(v):
    have = [int(x) for x in re.findall(r"\d+", platform.release())[:2]]
    want = [int(x) for x in v.split(".")[:2]]
    return have >= want


def action(rule, profile):
    a = rule["action"]
    if a == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if a == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(rule.get("errnoRet", profile.get("defaultErrnoRet", errno.EPERM)))
    if a == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if a == "SCMP_ACT_TRAP":
        return seccomp.TRAP
    raise SystemExit(f"unsupported action {a}")


def docker_filter(path):
    profile = json.load(open(path))
    f = seccomp.SyscallFilter(defaction=action({"action": profile["defaultAction"]}, profile))
    count = 0
    for rule in profile["syscalls"]:
        inc, exc = rule.get("includes", {}) or {}, rule.get("excludes", {}) or {}
        if inc.get("caps"):
            continue  # the container has no capabilities
        if inc.get("arches") and "amd64" not in inc["arches"]:
            continue
        if exc.get("arches") and "amd64" in exc["arches"]:
            continue
        if inc.get("minKernel") and not kernel_at_least(inc["minKernel"]):
            continue
        args = []
        for a in rule.get("args") or []:
            op = OPS[a["op"]]
            if op == seccomp.MASKED_EQ:
                args.append(seccomp.Arg(a["index"], op, a["value"], a.get("valueTwo", 0)))
            else:
                args.append(seccomp.Arg(a["index"], op, a["value"]))
        act = action(rule, profile)
        for name in rule["names"]:
            try:
                f.add_rule(act, name, *args)
                count += 1
            except (RuntimeError, ValueError, OSError):
                pass  # another architecture's syscall
    return f, count


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")
    opts, cmd = argv[:cut], argv[cut + 1:]
    user = "nobody"
    kind = path = None
    while opts:
        o = opts.pop(0)
        if o == "--unit":
            kind, path = "unit", opts.pop(0)
        elif o == "--docker-profile":
            kind, path = "docker", opts.pop(0)
        elif o == "--user":
            user = opts.pop(0)
        else:
            sys.exit(f"unknown option {o}\n{__doc__}")
    if not kind or not cmd:
        sys.exit(__doc__)
    f, n = unit_filter(path) if kind == "unit" else docker_filter(path)
    print(f"seccomp_run: {n} rules from {path}; running as {user}", file=sys.stderr)
    pw = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)  # drops every capability
    f.load()  # sets no_new_privs first (libseccomp's default)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
