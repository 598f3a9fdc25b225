;;; init.el for tests/test_emacs.py: a user's Emacs with eglot and glm-lsp. -*- lexical-binding: t -*-
;; The test fills in the @...@ placeholders; everything else is what the README tells a user.
(package-initialize)  ; Debian's elpa-eglot lives in /usr/share/emacs/site-lisp/elpa
(let ((upstream "@UPSTREAM@"))  ; upstream eglot and the packages it needs, loaded over Emacs's own
  (unless (string-empty-p upstream)
    (add-to-list 'load-path upstream)
    (require 'compat)
    (dolist (lib '("jsonrpc" "eldoc" "project" "xref" "flymake" "external-completion" "eglot"))
      (load (expand-file-name lib upstream) nil t))))
(require 'eglot)
(setq inhibit-startup-screen t
      make-backup-files nil
      auto-save-default nil
      create-lockfiles nil
      ring-bell-function #'ignore
      native-comp-async-report-warnings-errors 'silent)
;; The server program: each project's replies file is set by the test before `M-x eglot'.
(defvar glm-test-replies nil)
(add-to-list 'eglot-server-programs
             `(python-mode . ,(lambda (&rest _)
                                (list @PYTHON@ "-m" "glm_lsp.cli" "serve"
                                      "--model" "@MODEL@"
                                      "--scripted-replies" glm-test-replies))))

;; The test reads state with emacsclient; what the user sees it reads from the tmux screen;
;; the test starts once this server answers, so it comes last.
(setq server-socket-dir "@SOCKDIR@")
(server-start)
