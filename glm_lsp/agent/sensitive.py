"""Files that run code on their own, without anyone running them: a change to one is marked in
the review, and `glm-lsp run --apply` writes it only with `--allow-sensitive`.

The list: CI configuration (runs on the next push), direnv's `.envrc` (runs on `cd`), editor tasks
and settings that name programs (`.vscode/`), dev containers (run on open), pre-commit and
lefthook configuration (run on commit). `.git/hooks` and `.husky` are refused outright elsewhere.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

# Workspace-relative patterns, matched case-insensitively against the whole path: `**/name` is a
# name at any depth, `dir/**` anything below dir, anything else an fnmatch pattern.
RUNS_CODE = (
    ".envrc",
    "**/.envrc",
    ".vscode/tasks.json",
    ".vscode/launch.json",
    ".vscode/settings.json",
    "*.code-workspace",
    ".devcontainer/**",
    ".devcontainer.json",
    ".github/workflows/**",
    ".github/actions/**",
    ".gitlab-ci.yml",
    ".gitlab-ci.yaml",
    ".gitlab/ci/**",
    ".circleci/**",
    ".travis.yml",
    "azure-pipelines.yml",
    ".azure-pipelines/**",
    ".buildkite/**",
    "jenkinsfile",
    ".drone.yml",
    "bitbucket-pipelines.yml",
    ".pre-commit-config.yaml",
    "lefthook.yml",
    ".lefthook.yml",
    ".husky/**",
)


def _match(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):  # a name at any depth
        return path == pattern[3:] or path.endswith(pattern[2:])
    if pattern.endswith("/**"):  # anything below a folder
        return path.startswith(pattern[:-2])
    return fnmatchcase(path, pattern)


def runs_code(path: str) -> bool:
    """True when a change to `path` (workspace-relative, '/'-separated) can run code by itself."""
    folded = path.casefold()
    return any(_match(folded, p) for p in RUNS_CODE)
