"""Workspace index: gitignore-aware file list, tree-sitter outlines, search, file watching."""

from .index import WorkspaceIndex
from .outline import Symbol, format_outline
from .watcher import Change, WorkspaceWatcher

__all__ = ["Change", "Symbol", "WorkspaceIndex", "WorkspaceWatcher", "format_outline"]
