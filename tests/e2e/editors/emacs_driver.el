;;; emacs_driver.el --- plays the user in `emacs --batch'  -*- lexical-binding: t; -*-

;; Loaded after the user's init file (the README's block for eglot or for
;; lsp-mode).  Answers `completing-read', `read-string' and `yes-or-no-p'
;; from the test's config, opens a file of the project, starts the front end
;; as the user would (M-x eglot, or M-x lsp in a project lsp-mode knows),
;; and runs the scenario of tests/e2e/test_editor_emacs.py.  Results go to a
;; JSON file; a failure writes (error . MESSAGE) and exits 1.
;;
;; Batch Emacs never becomes idle (idle timers do not run), so the driver
;; calls the package's idle-timer function itself at the moments a user
;; would pause; everything else is the real thing.

(require 'json)
(require 'cl-lib)

(defvar drv-cfg (json-parse-string (getenv "OPENDEV_TEST_CONFIG") :object-type 'alist :array-type 'list))
(defun drv-get (&rest keys)
  (let ((v drv-cfg))
    (dolist (k keys v) (setq v (alist-get k v)))))

(defvar drv-result nil)
(defvar drv-asked nil "Every question completing-read saw, most recent first.")
(defvar drv-picks nil "Queue of functions (PROMPT COLLECTION DEF) -> choice, for other completing-reads.")
(defvar drv-messages nil)
(defvar drv-warnings nil)
(defvar drv-minibuffer-busy nil "Non-nil: pretend a minibuffer is in use.")
(defvar drv-shown nil "Every minibuffer prompt and candidate shown, most recent first.")

(defun drv-put (key value) (setf (alist-get key drv-result) value))

(advice-add 'message :before
            (lambda (fmt &rest args)
              (when fmt (push (apply #'format-message fmt args) drv-messages))))
(defvar drv-our-warnings nil "The warnings of type `opendev-snapshot'.")
(advice-add 'display-warning :before
            (lambda (type message &rest _)
              (push message drv-warnings)
              (when (eq type 'opendev-snapshot) (push message drv-our-warnings))))
(advice-add 'minibuffer-depth :filter-return
            (lambda (depth) (if drv-minibuffer-busy (max depth 1) depth)))

(defvar drv-order-shown nil "The candidates of the last completing-read, in *Completions*'s order.")

(defun drv-completions-shown (collection pred)
  "The candidates of COLLECTION as *Completions* lists them (after TAB TAB or ?).
The real `minibuffer-completion-help', run on an empty input: it sorts with
the table's `display-sort-function', else alphabetically."
  (with-temp-buffer
    (let ((minibuffer-completion-table collection) (minibuffer-completion-predicate pred))
      (let ((inhibit-message t)) (minibuffer-completion-help))
      (with-current-buffer "*Completions*"
        (let (out (pos (point-min)))
          (while (setq pos (next-single-property-change pos 'mouse-face))
            (when (get-text-property pos 'mouse-face)
              (push (buffer-substring-no-properties
                     pos (or (next-single-property-change pos 'mouse-face) (point-max)))
                    out)))
          (nreverse out))))))

(defun drv-completing-read (prompt collection &optional pred _req initial _hist def &rest _)
  (let ((names (mapcar (lambda (c) (if (consp c) (car c) c)) (all-completions "" collection pred)))
        (def (if (consp def) (car def) def)))
    (setq drv-order-shown (drv-completions-shown collection pred))
    (setq drv-shown (append (reverse names) (list prompt) drv-shown))
    ;; (the question is the last line: the prompt may start with what the
    ;; previous answer did)
    (if (string-match "session \\([[:alnum:]_.-]+\\) (" prompt (or (cl-position ?\n prompt :from-end t) 0))
        ;; a question about an interrupted session
        (let* ((id (match-string 1 prompt))
               (answer (alist-get (intern id) (drv-get 'answers))))
          (push (list (cons 'id id) (cons 'items names) (cons 'answer answer) (cons 'default def)
                      (cons 'initial initial) (cons 'prompt prompt) (cons 'at (float-time))
                      (cons 'messages_before (length drv-messages))
                      (cons 'in_filter (if (and (boundp 'drv-in-scenario-step) (not drv-in-scenario-step)) t :json-false)))
                drv-asked)
          ;; "RET" is the empty string: the default
          (if (equal answer "RET") (or def "") answer))
      (let ((pick (pop drv-picks)))
        (unless pick (error "Unexpected completing-read: %s" prompt))
        (funcall pick prompt names def)))))
(setq completing-read-function #'drv-completing-read)

(defvar drv-in-scenario-step t)

(defun drv-wait (what pred &optional secs)
  (let ((deadline (+ (float-time) (or secs 30))))
    (while (not (funcall pred))
      (when (> (float-time) deadline) (error "Timed out waiting for %s" what))
      (accept-process-output nil 0.02))))

(defun drv-wait-not-asking (what pred &optional secs)
  "Wait for PRED while server messages arrive: no question may be asked meanwhile."
  (let ((drv-in-scenario-step nil))
    (drv-wait what pred secs)))

(defun drv-terminal-for (id)
  (cl-find-if (lambda (b) (equal (buffer-local-value 'opendev-snapshot-session b) id)) (buffer-list)))

(defun drv-pick-session (id &optional record)
  (lambda (_prompt names _def)
    (when record (drv-put record names))
    (or (cl-find-if (lambda (n) (string-prefix-p (concat id "  ") n)) names)
        (error "Session %s not offered: %S" id names))))

(defun drv-queued-p (id)
  (cl-find id opendev-snapshot--queue :key (lambda (item) (plist-get (cdr item) :sessionId)) :test #'equal))

(defun drv-message (text)
  (cl-find-if (lambda (m) (string-match-p (regexp-quote text) m)) drv-messages))

(defun drv-warning (text)
  (cl-find-if (lambda (m) (string-match-p (regexp-quote text) m)) drv-warnings))

(defun drv-start ()
  "Open a project file and start the front end as the user would."
  ;; Emacs runs in the project directory (whose name may not survive an
  ;; environment variable): default-directory is the project
  (find-file (expand-file-name "main.py"))
  (pcase (drv-get 'front_end)
    ("eglot" (call-interactively #'eglot))
    ("lsp-mode"
     ;; the project is one lsp-mode knows (else it asks where the root is)
     (require (quote lsp-mode))
     (lsp-workspace-folders-add (directory-file-name default-directory))
     (call-interactively #'lsp))))

(defun drv-idle ()
  "The user pauses: what the package's timer runs once Emacs is idle."
  (drv-put 'poll_timer (if (memq opendev-snapshot--timer timer-list) t :json-false))
  (drv-put 'idle_p_before (if (opendev-snapshot--idle-p) t :json-false))
  (opendev-snapshot-ask-when-idle))

(defun drv-scenario ()
  (let ((ids (drv-get 'ids)) (files (drv-get 'files)))
    ;; 1. Open the project: four questions arrive and are queued, none asked.
    (drv-start)
    (drv-wait-not-asking "four queued questions"
                         (lambda () (cl-every #'drv-queued-p (drv-get 'prompted_on_open))))
    (drv-put 'asked_before_idle (length drv-asked))
    (drv-put 'recoverable (vconcat (mapcar (lambda (entry) (vconcat (mapcar (lambda (s) (plist-get s :sessionId)) (cdr entry))))
                                           opendev-snapshot-recoverable)))
    (drv-put 'mode_line_on_open (opendev-snapshot-mode-line-string))
    (drv-put 'in_global_mode_string (if (member '(:eval (opendev-snapshot-mode-line-string)) global-mode-string) t :json-false))
    ;; 2. A session dies: its question is queued too.
    (signal-process (drv-get 'dies_pid) 'SIGKILL)
    (drv-wait-not-asking "the question about the session that died"
                         (lambda () (drv-queued-p (alist-get 'dies ids))))
    (drv-put 'asked_before_idle_2 (length drv-asked))
    ;; 3. Idle, but a minibuffer is in use: nothing is asked.
    (let ((drv-minibuffer-busy t)) (drv-idle))
    (drv-put 'asked_with_minibuffer (length drv-asked))
    ;; 4. The user pauses: the first question; each next one follows after
    ;;    the same pause with no key pressed, by the package's own timer.
    (drv-idle)
    (drv-wait "five questions" (lambda () (>= (length drv-asked) 5)))
    (drv-put 'queue_after (length opendev-snapshot--queue))
    (drv-wait "Discard to remove its file" (lambda () (not (file-exists-p (alist-get 'discard files)))))
    (drv-wait "the discard message" (lambda () (drv-message (format "discarded %s" (alist-get 'discard ids)))))
    (drv-put 'discard_message (drv-message (format "discarded %s" (alist-get 'discard ids))))
    (drv-wait "the missing-program guidance" (lambda () (drv-warning (format "Cannot resume %s" (alist-get 'recover ids)))))
    (drv-put 'guidance (drv-warning (format "Cannot resume %s" (alist-get 'recover ids))))
    (drv-wait "the notebook recover" (lambda () (get-buffer (format "*OpenDev recover %s*" (alist-get 'notebook ids)))))
    (drv-put 'notebook_help (with-current-buffer (format "*OpenDev recover %s*" (alist-get 'notebook ids)) (buffer-string)))
    (drv-put 'kill_ring_head (current-kill 0 t))
    (drv-put 'terminals_after_prompts (vconcat (delq nil (mapcar (lambda (b) (buffer-local-value 'opendev-snapshot-session b)) (buffer-list)))))
    ;; 5. Undo the Discard: M-x opendev-snapshot-restore RET (the default is the one discarded last).
    (setq drv-picks (list (lambda (prompt names def) (drv-put 'restore_prompt prompt) (drv-put 'restore_names names)
                            (drv-put 'restore_default def) def)))
    (call-interactively #'opendev-snapshot-restore)
    (drv-wait "the restored file" (lambda () (file-exists-p (alist-get 'discard files))))
    ;; 6. Install the resume program, then Recover from the sessions command.
    (with-temp-file (drv-get 'fake_program) (insert (drv-get 'fake_program_text)))
    (set-file-modes (drv-get 'fake_program) #o755)
    (setq drv-picks (list (drv-pick-session (alist-get 'recover ids) 'listed)
                          (lambda (p names _d) (drv-put 'actions names) (drv-put 'action_prompt p) "Recover")))
    (call-interactively #'opendev-snapshot-sessions)
    (drv-wait "the resume program to run" (lambda () (file-exists-p (drv-get 'fake_marker))))
    ;; 7. Discard of a running session: refused, and said so.
    (setq drv-picks (list (drv-pick-session (alist-get 'held ids)) (lambda (&rest _) "Discard")))
    (call-interactively #'opendev-snapshot-sessions)
    (drv-wait "the running refusal" (lambda () (drv-message (format "%s is running (" (alist-get 'held ids)))))
    (drv-put 'running_message (drv-message (format "%s is running (" (alist-get 'held ids))))
    ;; 8. C-u M-x opendev-snapshot-sessions: every project (params {}); quit the pick.
    (setq drv-picks (list (lambda (_p names _d) (drv-put 'listed_all names) (signal 'quit nil))))
    (condition-case nil
        (let ((current-prefix-arg '(4))) (call-interactively #'opendev-snapshot-sessions))
      (quit nil))
    ;; 9. M-x opendev-snapshot-cleanup: asks the age (7d), confirms, moves to the trash.
    (cl-letf (((symbol-function 'read-string)
               (lambda (prompt &rest _) (drv-put 'input_prompt prompt) "7d"))
              ((symbol-function 'yes-or-no-p)
               (lambda (prompt) (drv-put 'confirm prompt) t)))
      (call-interactively #'opendev-snapshot-cleanup))
    (drv-wait "cleanup to remove the other project's session" (lambda () (not (file-exists-p (alist-get 'other files)))))
    (drv-wait "the mode line count to settle" (lambda () (not (equal (opendev-snapshot-mode-line-string) ""))))
    (drv-put 'mode_line_end (substring-no-properties (opendev-snapshot-mode-line-string)))
    (drv-put 'recovered (reverse opendev-snapshot-recovered))
    (drv-put 'terminals (vconcat (delq nil (mapcar (lambda (b) (buffer-local-value 'opendev-snapshot-session b)) (buffer-list)))))
    (drv-put 'terminal_commands
             (vconcat (delq nil (mapcar (lambda (b) (buffer-local-value 'opendev-snapshot-command-line b)) (buffer-list)))))
    (drv-put 'asked (reverse drv-asked))
    (drv-put 'messages (reverse drv-messages))
    (drv-put 'warnings (reverse drv-warnings))
    (drv-put 'emacs_version emacs-version)
    (pcase (drv-get 'front_end)
      ("eglot"
       (let ((server (eglot-current-server)))
         (drv-put 'server_class (symbol-name (eieio-object-class server)))
         (eglot-shutdown server)
         (drv-put 'server_alive_after_shutdown (if (jsonrpc-running-p server) t :json-false))))
      ("lsp-mode"
       (let ((workspace (lsp-find-workspace 'opendev-snapshot nil)))
         (drv-put 'server_class "lsp-mode")
         (lsp-workspace-shutdown workspace)
         (drv-wait "lsp-mode to stop the server" (lambda () (not (lsp-find-workspace 'opendev-snapshot nil))))
         (drv-put 'server_alive_after_shutdown :json-false))))))

;; The hostile project: questions on open (Discard the agent session,
;; Recover the notebook's), every project's sessions, Discard of the held
;; one (refused, naming its host), the trash.  What was shown: messages,
;; warnings, minibuffer prompts and candidates, the notebook's help buffer.
(defun drv-hostile ()
  (let ((ids (drv-get 'ids)) (files (drv-get 'files)))
    (drv-start)
    (drv-wait-not-asking "two queued questions"
                         (lambda () (and (drv-queued-p (alist-get 'agent ids)) (drv-queued-p (alist-get 'notebook ids)))))
    (drv-idle)
    (drv-wait "two questions" (lambda () (>= (length drv-asked) 2)))
    (drv-wait "the discard message" (lambda () (drv-message (format "discarded %s" (alist-get 'agent ids)))))
    (drv-wait "the notebook recover" (lambda () (get-buffer (format "*OpenDev recover %s*" (alist-get 'notebook ids)))))
    (drv-put 'notebook_help (with-current-buffer (format "*OpenDev recover %s*" (alist-get 'notebook ids)) (buffer-string)))
    (setq drv-picks (list (drv-pick-session (alist-get 'held ids) 'listed_all) (lambda (&rest _) "Discard")))
    (let ((current-prefix-arg '(4))) (call-interactively #'opendev-snapshot-sessions))
    (drv-wait "the running refusal" (lambda () (drv-message (format "%s is running (" (alist-get 'held ids)))))
    (setq drv-picks (list (lambda (_prompt names def) (drv-put 'trash_listed names) def)))
    (call-interactively #'opendev-snapshot-restore)
    (drv-wait "the restored file" (lambda () (file-exists-p (alist-get 'agent files))))
    (drv-put 'mode_line (substring-no-properties (opendev-snapshot-mode-line-string)))
    (drv-put 'asked (reverse drv-asked))
    (drv-put 'shown (reverse drv-shown))
    (drv-put 'messages (reverse drv-messages))
    (drv-put 'warnings (reverse drv-warnings))
    (drv-put 'our_warnings (vconcat (reverse drv-our-warnings)))
    (drv-put 'messages_buffer (with-current-buffer (messages-buffer) (buffer-string)))))

;; The pickers' order: this project's sessions and the trash, as the server
;; sends them (newest first) and as *Completions* shows them.
(defun drv-order ()
  (drv-start)
  (drv-wait-not-asking "the queued questions"
                       (lambda () (cl-every #'drv-queued-p (drv-get 'prompted_on_open))))
  (dolist (step '((opendev-snapshot-sessions . sessions) (opendev-snapshot-restore . trash)))
    (setq drv-picks (list (lambda (_p names _d)
                            (drv-put (cdr step) (vconcat names))
                            (drv-put (intern (format "%s_shown" (cdr step))) (vconcat drv-order-shown))
                            (signal 'quit nil))))
    (condition-case nil (call-interactively (car step)) (quit nil)))
  (drv-put 'messages (reverse drv-messages)))

(defun drv-write ()
  (let ((coding-system-for-write 'utf-8))
    (with-temp-file (drv-get 'result)
      (insert (json-encode drv-result)))))

(condition-case err
    (progn (pcase (drv-get 'scenario)
             ("hostile" (drv-hostile))
             ("order" (drv-order))
             (_ (drv-scenario)))
           (drv-write)
           (kill-emacs 0))
  (error
   (drv-put 'error (error-message-string err))
   (drv-put 'messages (reverse drv-messages))
   (drv-put 'warnings (reverse drv-warnings))
   (drv-put 'asked (reverse drv-asked))
   (drv-write)
   (kill-emacs 1)))
