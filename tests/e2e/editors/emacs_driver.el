;;; emacs_driver.el --- plays the user in `emacs --batch'  -*- lexical-binding: t; -*-

;; Loaded after the user's init file (the README's block).  Answers
;; `completing-read', `read-string' and `yes-or-no-p' from the test's
;; config, opens a file of the project, starts eglot as `M-x eglot' does,
;; and runs the scenario of tests/e2e/test_editor_emacs.py.  Results go to a
;; JSON file; a failure writes (error . MESSAGE) and exits 1.

(require 'json)
(require 'cl-lib)

(defvar drv-cfg (json-parse-string (getenv "OPENDEV_TEST_CONFIG") :object-type 'alist :array-type 'list))
(defun drv-get (&rest keys)
  (let ((v drv-cfg))
    (dolist (k keys v) (setq v (alist-get k v)))))

(defvar drv-result nil)
(defvar drv-prompts nil)
(defvar drv-picks nil "Queue of functions (PROMPT COLLECTION) -> choice, for other completing-reads.")
(defvar drv-messages nil)

(defun drv-put (key value) (setf (alist-get key drv-result) value))

(advice-add 'message :before
            (lambda (fmt &rest args)
              (when fmt (push (apply #'format-message fmt args) drv-messages))))

(defun drv-completing-read (prompt collection &rest _)
  (let ((names (mapcar (lambda (c) (if (consp c) (car c) c)) (all-completions "" collection))))
    (if (string-match "OpenDev session \\([[:alnum:]_.-]+\\) " prompt)
        ;; the server's window/showMessageRequest, through eglot's own handler
        (let* ((id (match-string 1 prompt))
               (answer (alist-get (intern id) (drv-get 'answers))))
          (push (list (cons 'id id) (cons 'items names) (cons 'answer answer)) drv-prompts)
          answer)
      (let ((pick (pop drv-picks)))
        (unless pick (error "Unexpected completing-read: %s" prompt))
        (funcall pick prompt names)))))
(setq completing-read-function #'drv-completing-read)

(defun drv-wait (what pred &optional secs)
  (let ((deadline (+ (float-time) (or secs 10))))
    (while (not (funcall pred))
      (when (> (float-time) deadline) (error "Timed out waiting for %s" what))
      (accept-process-output nil 0.02))))

(defun drv-terminal-for (id)
  (cl-find-if (lambda (b) (equal (buffer-local-value 'opendev-snapshot-session b) id)) (buffer-list)))

(defun drv-pick-session (id &optional record)
  (lambda (_prompt names)
    (when record (drv-put record names))
    (or (cl-find-if (lambda (n) (string-prefix-p (concat id "  ") n)) names)
        (error "Session %s not offered: %S" id names))))

(defun drv-scenario ()
  (let ((ids (drv-get 'ids)) (files (drv-get 'files)))
    ;; 1. Open a project file and start eglot as M-x eglot does.
    (find-file (expand-file-name "main.py" (drv-get 'project)))
    (call-interactively #'eglot)
    (drv-wait "opendev/recoverableSessions" (lambda () opendev-snapshot-recoverable))
    (drv-wait "three prompts" (lambda () (>= (length drv-prompts) 3)))
    (drv-wait "a terminal resuming the Recover session" (lambda () (drv-terminal-for (alist-get 'recover ids))))
    (drv-wait "Discard to remove its file" (lambda () (not (file-exists-p (alist-get 'discard files)))))
    (drv-put 'recoverable (vconcat (mapcar (lambda (entry) (vconcat (mapcar (lambda (s) (plist-get s :sessionId)) (cdr entry))))
                                           opendev-snapshot-recoverable)))
    (drv-put 'server_class (symbol-name (eieio-object-class (eglot-current-server))))
    ;; 2. M-x opendev-snapshot-sessions -> the Later session -> Recover
    (setq drv-picks (list (drv-pick-session (alist-get 'later ids) 'listed)
                          (lambda (_p names) (drv-put 'actions names) "Recover")))
    (call-interactively #'opendev-snapshot-sessions)
    (drv-wait "a terminal resuming the Later session" (lambda () (drv-terminal-for (alist-get 'later ids))))
    ;; 3. ... -> Discard
    (setq drv-picks (list (drv-pick-session (alist-get 'later ids)) (lambda (&rest _) "Discard")))
    (call-interactively #'opendev-snapshot-sessions)
    (drv-wait "Discard to remove the Later session" (lambda () (not (file-exists-p (alist-get 'later files)))))
    ;; 4. C-u M-x opendev-snapshot-sessions: every project (params {}); quit the pick.
    (setq drv-picks (list (lambda (_p names) (drv-put 'listed_all names) (signal 'quit nil))))
    (condition-case nil
        (let ((current-prefix-arg '(4))) (call-interactively #'opendev-snapshot-sessions))
      (quit nil))
    ;; 5. M-x opendev-snapshot-cleanup: asks the age (7d), confirms, removes.
    (cl-letf (((symbol-function 'read-string)
               (lambda (prompt &rest _) (drv-put 'input_prompt prompt) "7d"))
              ((symbol-function 'yes-or-no-p)
               (lambda (prompt) (drv-put 'confirm prompt) t)))
      (call-interactively #'opendev-snapshot-cleanup))
    (drv-wait "cleanup to remove the other project's session" (lambda () (not (file-exists-p (alist-get 'other files)))))
    (drv-put 'recovered (reverse opendev-snapshot-recovered))
    (drv-put 'terminals (delq nil (mapcar (lambda (b) (buffer-local-value 'opendev-snapshot-session b)) (buffer-list))))
    (drv-put 'terminal_commands
             (delq nil (mapcar (lambda (b) (buffer-local-value 'opendev-snapshot-command-line b)) (buffer-list))))
    (drv-put 'prompts drv-prompts)
    (drv-put 'messages (reverse drv-messages))
    (drv-put 'emacs_version emacs-version)
    (drv-put 'eglot_version (or (ignore-errors (package-desc-version (cadr (assq 'eglot package-alist)))) "builtin"))
    (let ((server (eglot-current-server)))
      (eglot-shutdown server)
      (drv-put 'server_alive_after_shutdown (if (process-live-p (jsonrpc--process server)) t :json-false)))))

(defun drv-write ()
  (with-temp-file (drv-get 'result)
    (insert (json-encode drv-result))))

(condition-case err
    (progn (drv-scenario) (drv-write) (kill-emacs 0))
  (error
   (drv-put 'error (error-message-string err))
   (drv-put 'messages (reverse drv-messages))
   (drv-put 'prompts drv-prompts)
   (drv-write)
   (kill-emacs 1)))
