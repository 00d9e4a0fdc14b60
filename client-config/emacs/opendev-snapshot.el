;;; opendev-snapshot.el --- Recover interrupted OpenDev sessions with eglot  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: tools, processes
;; SPDX-License-Identifier: MIT

;;; Commentary:

;; Runs `opendev-snapshot serve' through eglot.  When a project with
;; interrupted OpenDev sessions is opened, eglot asks Recover / Discard /
;; Later for each (the server's `window/showMessageRequest'); Recover opens a
;; terminal running `opendev-snapshot-resume-command'.
;;
;;   (require 'opendev-snapshot)
;;   (opendev-snapshot-setup)
;;
;; Commands: `opendev-snapshot-sessions' (C-u: every project),
;; `opendev-snapshot-cleanup'.  Works with Emacs 29's built-in eglot and
;; with eglot 1.9 on Emacs 28.

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)
(require 'term)

(defgroup opendev-snapshot nil
  "Recovery of interrupted OpenDev sessions."
  :group 'tools
  :prefix "opendev-snapshot-")

(defcustom opendev-snapshot-server-command '("opendev-snapshot" "serve")
  "Program and arguments that start the snapshot server."
  :type '(repeat string))

(defcustom opendev-snapshot-directory nil
  "Snapshot directory (initializationOptions.snapshotDir).
nil: $OPENDEV_SNAPSHOT_DIR, else ~/.opendev/data/recovery."
  :type '(choice (const :tag "Server default" nil) directory))

(defcustom opendev-snapshot-prompt t
  "Ask Recover / Discard / Later for each interrupted session."
  :type 'boolean)

(defcustom opendev-snapshot-max-prompts 3
  "At most this many prompts per project, newest sessions first."
  :type 'integer)

(defcustom opendev-snapshot-stale-after-ms 120000
  "A snapshot without a lock file counts as interrupted after this long."
  :type 'integer)

(defcustom opendev-snapshot-resume-command "opendev --resume ${sessionId}"
  "Command run in a terminal on Recover.
${sessionId} and ${projectDir} are replaced, shell-quoted."
  :type 'string)

(defcustom opendev-snapshot-modes
  '(python-mode python-ts-mode js-mode js-ts-mode typescript-mode typescript-ts-mode
    tsx-ts-mode rust-mode rust-ts-mode go-mode go-ts-mode c-mode c-ts-mode c++-mode
    c++-ts-mode java-mode java-ts-mode ruby-mode ruby-ts-mode sh-mode bash-ts-mode
    markdown-mode org-mode)
  "Major modes whose buffers start the snapshot server with `eglot'.
eglot runs one server per project and major mode: for a mode you already
use with another eglot server, leave it out of this list."
  :type '(repeat symbol))

(defvar opendev-snapshot-recoverable nil
  "Alist of (FOLDER-URI . SESSIONS) announced by the server.
SESSIONS is a list of Listing plists.")

(defvar opendev-snapshot-recovered nil
  "Session ids recovered in this Emacs, most recent first.")

(defvar-local opendev-snapshot-session nil
  "The session id a resume terminal buffer runs.")

(defvar-local opendev-snapshot-command-line nil
  "The command line a resume terminal buffer runs.")

(defclass opendev-snapshot-server (eglot-lsp-server) ()
  :documentation "The opendev-snapshot server.")

(cl-defmethod eglot-initialization-options ((_server opendev-snapshot-server))
  (append
   (list :prompt (if opendev-snapshot-prompt t :json-false)
         :maxPrompts opendev-snapshot-max-prompts
         :staleAfterMs opendev-snapshot-stale-after-ms)
   (when opendev-snapshot-directory
     (list :snapshotDir (expand-file-name opendev-snapshot-directory)))))

(defun opendev-snapshot--contact (&optional _interactive)
  "The eglot contact: our server class and `opendev-snapshot-server-command'."
  (cons 'opendev-snapshot-server opendev-snapshot-server-command))

;;;###autoload
(defun opendev-snapshot-setup ()
  "Register the snapshot server with eglot for `opendev-snapshot-modes'."
  (setq eglot-server-programs
        (cons (cons opendev-snapshot-modes #'opendev-snapshot--contact)
              (cl-remove #'opendev-snapshot--contact eglot-server-programs :key #'cdr))))

;;; Helpers

(defun opendev-snapshot--shell-quote (s)
  (if (string-match-p "\\`[[:alnum:]_./:=@%+-]+\\'" s)
      s
    (concat "'" (replace-regexp-in-string "'" "'\\\\''" s t) "'")))

(defun opendev-snapshot-resume-command-line (session)
  "The resume command line for SESSION (a Listing plist)."
  (let ((line (or opendev-snapshot-resume-command "opendev --resume ${sessionId}")))
    (setq line (replace-regexp-in-string
                "\\${sessionId}" (opendev-snapshot--shell-quote (plist-get session :sessionId)) line t t))
    (replace-regexp-in-string
     "\\${projectDir}" (opendev-snapshot--shell-quote (or (plist-get session :projectDir) "")) line t t)))

(defun opendev-snapshot--age (ms)
  (let ((s (max 0 (/ ms 1000))))
    (cl-loop for (unit . size) in '(("day" . 86400) ("hour" . 3600) ("minute" . 60))
             when (>= s size)
             return (let ((n (/ s size))) (format "%d %s%s" n unit (if (= n 1) "" "s")))
             finally return (format "%d second%s" s (if (= s 1) "" "s")))))

(defun opendev-snapshot-describe (session)
  "One line for SESSION (a Listing plist)."
  (let ((count (plist-get session :messageCount)))
    (format "%s  %s, %s ago, %d message%s, $%.2f  %s"
            (plist-get session :sessionId)
            (plist-get session :status)
            (opendev-snapshot--age (- (truncate (* 1000 (float-time)))
                                      (plist-get session :snapshotTimestampMs)))
            count (if (= count 1) "" "s")
            (plist-get session :costUsd)
            (plist-get session :projectDir))))

(defun opendev-snapshot-parse-duration (text)
  "Milliseconds for TEXT like 90s, 30m, 12h, 7d; nil if malformed."
  (when (and text (string-match "\\`[[:space:]]*\\([0-9]+\\)[[:space:]]*\\([smhd]\\)[[:space:]]*\\'" text))
    (* (string-to-number (match-string 1 text))
       (cdr (assoc (match-string 2 text) '(("s" . 1000) ("m" . 60000) ("h" . 3600000) ("d" . 86400000)))))))

(defun opendev-snapshot--server ()
  "The snapshot server of the current project, else any running one."
  (or (let ((s (ignore-errors (eglot-current-server))))
        (and (cl-typep s 'opendev-snapshot-server) s))
      (let ((project (project-current)))
        (cl-find-if (lambda (s) (cl-typep s 'opendev-snapshot-server))
                    (and project (gethash project eglot--servers-by-project))))
      (let (found)
        (maphash (lambda (_ servers)
                   (dolist (s servers)
                     (when (and (not found) (cl-typep s 'opendev-snapshot-server)) (setq found s))))
                 eglot--servers-by-project)
        found)
      (user-error "OpenDev: the snapshot server is not running (M-x eglot in a project file)")))

(defun opendev-snapshot--root (server)
  (expand-file-name (project-root (eglot--project server))))

(defun opendev-snapshot-open-terminal (session)
  "Open a terminal running the resume command of SESSION."
  (let* ((id (plist-get session :sessionId))
         (dir (plist-get session :projectDir))
         (default-directory (if (and dir (file-directory-p dir)) (file-name-as-directory dir) default-directory))
         (line (opendev-snapshot-resume-command-line session))
         (buffer (make-term (format "OpenDev %s" id) shell-file-name nil "-c" line)))
    (with-current-buffer buffer
      (term-char-mode)
      (setq opendev-snapshot-session id
            opendev-snapshot-command-line line))
    (pop-to-buffer buffer)
    buffer))

;;; Server to client

(cl-defmethod eglot-handle-notification
  ((_server opendev-snapshot-server) (_method (eql opendev/recoverableSessions)) &key workspaceFolder sessions)
  "Remember the interrupted SESSIONS of WORKSPACEFOLDER and say so."
  (let ((sessions (append sessions nil)))
    (setf (alist-get (plist-get workspaceFolder :uri) opendev-snapshot-recoverable nil nil #'equal) sessions)
    (message "OpenDev: %d interrupted session%s in %s: %s (M-x opendev-snapshot-sessions)"
             (length sessions) (if (= (length sessions) 1) "" "s")
             ;; eglot 1.9 names a folder by its full path
             (file-name-nondirectory (directory-file-name (plist-get workspaceFolder :name)))
             (mapconcat (lambda (s) (plist-get s :sessionId)) sessions ", "))))

(cl-defmethod eglot-handle-notification
  ((_server opendev-snapshot-server) (_method (eql opendev/recoverSession)) &key session)
  "Open a terminal resuming SESSION."
  (push (plist-get session :sessionId) opendev-snapshot-recovered)
  ;; Not from inside the process filter: the prompt may still be answering.
  (run-at-time 0 nil #'opendev-snapshot-open-terminal session))

(cl-defmethod eglot-handle-notification
  ((_server opendev-snapshot-server) (_method (eql $/progress)) &key token value)
  "Show cleanup progress."
  (when (and (stringp token) (string-prefix-p "opendev-cleanup-" token))
    (message "OpenDev cleanup: %s%s"
             (or (plist-get value :title) (plist-get value :message) "")
             (if (plist-get value :percentage) (format " (%d%%)" (plist-get value :percentage)) ""))))

;;; Commands

(defun opendev-snapshot--command (server command session-id)
  (jsonrpc-request server :workspace/executeCommand
                   (list :command command :arguments (vector session-id))))

;;;###autoload
(defun opendev-snapshot-sessions (&optional all)
  "Pick an incomplete session of this project, then Recover or Discard it.
With a prefix argument ALL, list the sessions of every project."
  (interactive "P")
  (let* ((server (opendev-snapshot--server))
         (result (jsonrpc-request server :opendev/snapshot.listIncomplete
                                  (if all
                                      (make-hash-table) ; {}: every project
                                    (list :projectDir (opendev-snapshot--root server)))))
         (sessions (append (plist-get result :sessions) nil)))
    (if (null sessions)
        (message "OpenDev: no incomplete sessions")
      (let* ((choices (mapcar (lambda (s) (cons (opendev-snapshot-describe s) s)) sessions))
             (session (cdr (assoc (completing-read "OpenDev session: " choices nil t) choices)))
             (id (plist-get session :sessionId))
             (action (completing-read (format "Session %s: " id) '("Recover" "Discard") nil t)))
        (pcase action
          ("Recover" (opendev-snapshot--command server "opendev.snapshot.recover" id))
          ("Discard"
           (let ((r (opendev-snapshot--command server "opendev.snapshot.discard" id)))
             (message (if (eq (plist-get r :removed) t)
                          "OpenDev: discarded %s" "OpenDev: %s was already gone")
                      id))))))))

(defvar opendev-snapshot--token-counter 0)

(defun opendev-snapshot--cleanup (server max-age-ms dry-run)
  (jsonrpc-request server :opendev/snapshot.cleanup
                   (list :maxAgeMs max-age-ms :dryRun (if dry-run t :json-false)
                         :workDoneToken (format "opendev-cleanup-%d-%d" (emacs-pid)
                                                (cl-incf opendev-snapshot--token-counter)))))

;;;###autoload
(defun opendev-snapshot-cleanup (age &optional force)
  "Remove snapshots older than AGE (90s, 30m, 12h, 7d); running sessions stay.
Shows how many would go and asks first, unless FORCE (prefix argument)."
  (interactive (list (read-string "Remove snapshots older than (90s, 30m, 12h, 7d): " nil nil "7d")
                     current-prefix-arg))
  (let ((ms (or (opendev-snapshot-parse-duration age)
                (user-error "OpenDev: not an age: %s (use 90s, 30m, 12h, 7d)" age)))
        (server (opendev-snapshot--server)))
    (let ((preview (if force nil (opendev-snapshot--cleanup server ms t))))
      (cond
       ((and preview (zerop (plist-get preview :removedCount)))
        (message "OpenDev: no snapshot older than %s" age))
       ((or force
            (yes-or-no-p (format "Remove %d snapshot(s) older than %s (%s)? "
                                 (plist-get preview :removedCount) age
                                 (mapconcat #'identity (plist-get preview :sessionIds) ", "))))
        (let ((r (opendev-snapshot--cleanup server ms nil)))
          (message "OpenDev: removed %d snapshot(s) older than %s" (plist-get r :removedCount) age)))))))

(provide 'opendev-snapshot)
;;; opendev-snapshot.el ends here
