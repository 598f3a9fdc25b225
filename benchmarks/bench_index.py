"""Workspace index benchmark: a generated 10,000-file tree, indexed and watched.

Run: python -m benchmarks.bench_index      (or import and call run() -> dict)

Measures the initial index (scan + first list_files) and its peak RSS in a fresh subprocess,
then change-to-index latency through the real watchdog observer.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_FILES = 10_000  # indexed files
N_IGNORED = 1_000  # extra files under gitignored directories
N_CHANGES = 100
PER_DIR = 50

_SNIPPETS = {
    ".py": "class C{i}:\n    def m(self, x):\n        return x + {i}\n\n\ndef f{i}(a):\n"
    "    return C{i}().m(a)\n",
    ".ts": "export class C{i} {{\n  m(x: number): number {{\n    return x + {i};\n  }}\n}}\n"
    "export const f{i} = (a: number) => new C{i}().m(a);\n",
    ".js": "function f{i}(a) {{\n  return a + {i};\n}}\nmodule.exports = {{ f{i} }};\n",
    ".go": "package p\n\ntype S{i} struct{{ x int }}\n\nfunc (s *S{i}) M() int {{\n"
    "\treturn s.x + {i}\n}}\n",
    ".rs": "pub struct S{i} {{ x: i32 }}\n\nimpl S{i} {{\n    pub fn m(&self) -> i32 {{\n"
    "        self.x + {i}\n    }}\n}}\n",
    ".c": "#include <stdio.h>\n\nint f{i}(int a) {{\n    return a + {i};\n}}\n",
    ".lua": "local M = {{}}\n\nfunction M.f{i}(a)\n  return a + {i}\nend\n\nreturn M\n",
    ".md": "# Note {i}\n\nSome prose about item {i}.\n",
}
_EXTS = list(_SNIPPETS)


def generate(root: Path) -> None:
    """N_FILES indexed files in PER_DIR-sized directories, plus gitignored build output."""
    (root / ".gitignore").write_text("node_modules/\nbuild/\n*.log\n")
    (root / ".git").mkdir()
    (root / ".git/HEAD").write_text("ref: refs/heads/main\n")
    for i in range(N_FILES - 1):  # the root .gitignore is the last indexed file
        ext = _EXTS[i % len(_EXTS)]
        d = root / f"pkg{i // (PER_DIR * 10)}" / f"mod{(i // PER_DIR) % 10}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}{ext}").write_text(_SNIPPETS[ext].format(i=i))
    for i in range(N_IGNORED):
        d = root / ("node_modules" if i % 2 else "build") / f"dep{i // 100}"
        if i % 100 < 2:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"x{i}.js").write_text(f"module.exports = {i};\n")


# Peak RSS from /proc's VmHWM where there is one: ru_maxrss survives exec on Linux, so a child of a
# big process (the benchmark runner, with models loaded) would report its parent's peak.
_CHILD = """
import json, resource, sys, time
def peak_kb():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
from glm_lsp.workspace import WorkspaceIndex
t1 = time.perf_counter()
rss_import = peak_kb()
index = WorkspaceIndex(sys.argv[1])
index.scan()
listed = index.list_files()
t2 = time.perf_counter()
hits = index.search("return a + 4242")
t3 = time.perf_counter()
symbols = index.outline("pkg0/mod0/file1.ts")
t4 = time.perf_counter()
rss = peak_kb()
print(json.dumps({"import_s": t1 - t0, "index_s": t2 - t1, "files": len(listed),
                  "search_s": t3 - t2, "hits": len(hits), "rss_kb": rss,
                  "outline_s": t4 - t3, "symbols": len(symbols),
                  "rss_import_kb": rss_import}))
"""


def measure_index(root: Path) -> dict:
    """Index in a fresh interpreter so RSS is that of indexing alone (in KiB)."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_watch(root: Path) -> tuple[list[float], float]:
    """Latency (ms) from a write to the index reflecting it, over creates/modifies/deletes."""
    from glm_lsp.workspace import WorkspaceIndex, WorkspaceWatcher

    index = WorkspaceIndex(root)
    index.scan()
    watcher = WorkspaceWatcher(index)
    t0 = time.perf_counter()
    watcher.start()
    start_s = time.perf_counter() - t0
    latencies: list[float] = []
    try:
        for n in range(N_CHANGES):
            i = n * 97 % (N_FILES - 1)
            ext = _EXTS[i % len(_EXTS)]
            rel = f"pkg{i // (PER_DIR * 10)}/mod{(i // PER_DIR) % 10}/file{i}{ext}"
            if n % 5 == 3:  # a new file
                rel = f"pkg0/mod0/new{n}.py"
            elif n % 5 == 4:  # delete the file created one step earlier
                rel = f"pkg0/mod0/new{n - 1}.py"
            path = root / rel
            gen = index.generation
            t = time.perf_counter()
            if n % 5 == 4:
                path.unlink()
            else:
                path.write_text(f"# edit {n}\n" + _SNIPPETS[".py"].format(i=n))
            deadline = t + 5.0
            while not any(c.path == rel for c in index.changes_since(gen)):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"change to {rel} not seen within 5 s")
                time.sleep(0.001)
            latencies.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)  # let the burst settle so each change is timed on its own
    finally:
        watcher.stop()
    return latencies, start_s


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="glm-lsp-bench-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        generate(root)
        gen_s = time.perf_counter() - t
        idx = measure_index(root)
        latencies, watch_start_s = measure_watch(root)
    result = {
        "index_10k_s": round(idx["index_s"], 3),
        "index_10k_rss_mb": round(idx["rss_kb"] / 1024, 1),
        "watch_latency_p50_ms": round(statistics.median(latencies), 1),
        "watch_latency_p95_ms": round(_percentile(latencies, 0.95), 1),
    }
    rows = [
        ("files generated (indexed + ignored)", f"{N_FILES} + {N_IGNORED}", ""),
        ("generate tree", f"{gen_s:.2f} s", ""),
        ("import glm_lsp.workspace", f"{idx['import_s']:.3f} s", ""),
        ("initial index: scan + list_files", f"{idx['index_s']:.3f} s", "< 10 s"),
        ("files listed", str(idx["files"]), str(N_FILES)),
        (
            "peak RSS after indexing + search + outline",
            f"{idx['rss_kb'] / 1024:.1f} MB",
            "< 300 MB",
        ),
        ("  of which interpreter + imports", f"{idx['rss_import_kb'] / 1024:.1f} MB", ""),
        ("literal search over all files", f"{idx['search_s']:.3f} s ({idx['hits']} hit)", ""),
        ("first outline (grammar load + parse)", f"{idx['outline_s'] * 1000:.1f} ms", ""),
        ("watcher start (inotify setup)", f"{watch_start_s:.3f} s", ""),
        ("change->index latency p50", f"{result['watch_latency_p50_ms']} ms", ""),
        ("change->index latency p95", f"{result['watch_latency_p95_ms']} ms", "< 300 ms"),
        ("change->index latency max", f"{max(latencies):.1f} ms", f"n={len(latencies)}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'value':>22}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>22}  {target}")
    return result


if __name__ == "__main__":
    print(json.dumps(run()))
