"""Files that run code on their own, without anyone running them, or that tell an editor or
an agent what to run or trust. A change to one is never written unasked: `glm-lsp run --apply`
and `glm-lsp undo` write it only with `--allow-sensitive`; the LSP server has the editor confirm it
(a `needsConfirmation` annotation, or a message where the client has no annotations) even with
`review: "direct"`; ACP asks the client per file.

The list: CI configuration (runs on the next push), direnv's `.envrc` (runs on `cd`), editor
folders whose tasks, launch and settings name programs (`.vscode/`, `.idea/` run configurations,
`.run/`, `.helix/`, `.zed/`, Neovim's `.nvim.lua`/`.exrc`), dev containers (run on open), git hook
managers (`.husky/`, pre-commit, lefthook: run on commit), and other agents' settings and MCP
servers (`.claude/`, `.cursor/`, `.mcp.json`). `.git/` itself is refused outright (files.py).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

# Workspace-relative patterns, matched case-insensitively against the whole path: `**/` in front
# means at any depth, `dir/**` anything below dir, anything else an fnmatch pattern.
RUNS_CODE = (
    ".envrc",
    "**/.envrc",
    # Editors and agents opened on a subfolder read that subfolder's own: at any depth.
    "**/.vscode/**",  # tasks, launch, settings, mcp.json, extensions' own files
    "**/*.code-workspace",
    "**/.idea/runconfigurations/**",
    "**/.idea/workspace.xml",
    "**/.run/**",  # JetBrains run configurations stored with the project
    "**/.helix/**",
    "**/.zed/**",
    "**/.nvim.lua",
    "**/.nvimrc",
    "**/.exrc",
    "**/.claude/**",
    "**/.cursor/**",
    "**/.mcp.json",
    "**/.devcontainer/**",
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
    if pattern.startswith("**/"):  # at any depth: the path, or any tail of it after a `/`
        parts = path.split("/")
        return any(_match("/".join(parts[i:]), pattern[3:]) for i in range(len(parts)))
    if pattern.endswith("/**"):  # anything below a folder
        return path.startswith(pattern[:-2])
    return fnmatchcase(path, pattern)


def runs_code(path: str) -> bool:
    """True when a change to `path` (workspace-relative, '/'-separated) can run code by itself."""
    folded = path.casefold()
    return any(_match(folded, p) for p in RUNS_CODE)
