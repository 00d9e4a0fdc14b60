;;; opendev-snapshot.el --- Recover interrupted OpenDev sessions (eglot or lsp-mode)  -*- lexical-binding: t; -*-

;; Version: 0.2.0
;; Package-Requires: ((emacs "28.1"))
;; Keywords: tools, processes
;; SPDX-License-Identifier: MIT

;;; Commentary:

;; Runs `opendev-snapshot serve' through eglot or lsp-mode.  When a project
;; with interrupted OpenDev sessions is opened (or a session dies while
;; Emacs runs), the server asks Recover / Discard / Later for each one.
;; This package answers the server at once and asks you itself, one
;; question at a time, only when Emacs has been idle for
;; `opendev-snapshot-prompt-idle-seconds' and no minibuffer is in use;
;; RET answers Later.
;;
;; Recover depends on the session's kind: an OpenDev agent session opens a
;; terminal running `opendev-snapshot-resume-command' (after checking that
;; its program exists); a notebook kernel's session shows where the
;; notebook is and puts `%opendev recover ID' in the kill ring.  Discard
;; moves the snapshot to the trash; `opendev-snapshot-restore' brings it
;; back.  The mode line shows "OpenDev:N" while there are interrupted
;; sessions.
;;
;;   (require 'opendev-snapshot)
;;   (opendev-snapshot-setup)            ; eglot
;;   (opendev-snapshot-setup 'lsp-mode)  ; or lsp-mode
;;
;; Commands: `opendev-snapshot-sessions' (C-u: every project),
;; `opendev-snapshot-restore', `opendev-snapshot-cleanup'.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'term)
(require 'url-util)

(defgroup opendev-snapshot nil
  "Recovery of interrupted OpenDev sessions."
  :group 'tools
  :prefix "opendev-snapshot-")

(defcustom opendev-snapshot-server-command '("opendev-snapshot" "serve")
  "Program and arguments that start the snapshot server.
The program may be an absolute path, e.g. a virtual environment's
bin/opendev-snapshot; `~' is expanded."
  :type '(repeat string))

(defcustom opendev-snapshot-directory nil
  "Snapshot directory (initializationOptions.snapshotDir).
nil: $OPENDEV_SNAPSHOT_DIR, else ~/.opendev/data/recovery."
  :type '(choice (const :tag "Server default" nil) directory))

(defcustom opendev-snapshot-prompt t
  "Ask Recover / Discard / Later for each interrupted session."
  :type 'boolean)

(defcustom opendev-snapshot-max-prompts 3
  "At most this many questions per project, newest sessions first."
  :type 'integer)

(defcustom opendev-snapshot-stale-after-ms 120000
  "A snapshot without a lock file counts as interrupted after this long."
  :type 'integer)

(defcustom opendev-snapshot-prompt-idle-seconds 1.0
  "Seconds of idleness a question waits for (also for no minibuffer in use)."
  :type 'number)

(defcustom opendev-snapshot-resume-command "opendev --resume ${sessionId}"
  "Command run in a terminal to recover an OpenDev agent session.
${sessionId} and ${projectDir} are replaced, shell-quoted."
  :type 'string)

(defcustom opendev-snapshot-mode-line t
  "Show \"OpenDev:N\" in the mode line while there are interrupted sessions."
  :type 'boolean)

(defcustom opendev-snapshot-modes
  '(python-mode python-ts-mode js-mode js-ts-mode typescript-mode typescript-ts-mode
                tsx-ts-mode rust-mode rust-ts-mode go-mode go-ts-mode c-mode c-ts-mode c++-mode
                c++-ts-mode java-mode java-ts-mode ruby-mode ruby-ts-mode sh-mode bash-ts-mode
                markdown-mode org-mode)
  "Major modes whose buffers start the snapshot server.
With eglot, which runs one server per project and major mode, leave out
the modes you already use with another eglot server.  lsp-mode runs this
server next to your usual one (an add-on client)."
  :type '(repeat symbol))

;;; State

(defvar opendev-snapshot-recoverable nil
  "Alist of (FOLDER-URI . SESSIONS) announced by the server.
SESSIONS is a list of Listing plists.")

(defvar opendev-snapshot-recovered nil
  "Session ids whose Recover was carried out in this Emacs, most recent first.")

(defvar opendev-snapshot-asked nil
  "Questions asked in this Emacs, most recent first.
Each is a plist (:id :prompt :answer).")

(defvar opendev-snapshot--queue nil
  "Questions waiting for an idle moment: a list of (CONNECTION . SESSION).")

(defvar opendev-snapshot--asking nil "Non-nil while a question is on screen.")
(defvar opendev-snapshot--timer nil "Polls for an idle moment while questions wait.")
(defvar opendev-snapshot--command-count 0 "Commands run while questions wait.")
(defvar opendev-snapshot--answered nil "(TIME . COMMAND-COUNT) of the last answer.")
(defvar opendev-snapshot--connections nil "Live server connections (eglot servers, lsp-mode workspaces).")
(defvar opendev-snapshot--roots (make-hash-table :test #'eq :weakness 'key)
  "Connection -> its project root (a directory name).")
(defvar opendev-snapshot--known (make-hash-table :test #'equal) "Session id -> latest Listing seen.")
(defvar opendev-snapshot--counts (make-hash-table :test #'equal) "Project root -> interrupted sessions.")
(defvar opendev-snapshot--outcome nil
  "What the last answer did, said again at the top of the next question.
The minibuffer of the next question would hide it in the echo area.")
(defvar opendev-snapshot--awaiting nil
  "`float-time' of an answer whose outcome has not arrived yet.
The next question waits for it, for `opendev-snapshot--outcome-wait'
seconds at most.")
(defconst opendev-snapshot--outcome-wait 3.0)
(defvar opendev-snapshot--last-discarded nil "The session id discarded last, the default of `opendev-snapshot-restore'.")

(defvar-local opendev-snapshot-session nil
  "The session id a resume terminal buffer runs.")

(defvar-local opendev-snapshot-command-line nil
  "The command line a resume terminal buffer runs.")

;;; The connection: each front end (eglot, lsp-mode) implements these.

(cl-defgeneric opendev-snapshot--send (connection method params on-result on-error)
  "Send request METHOD (a string) with PARAMS on CONNECTION.
Call ON-RESULT with the result or ON-ERROR with the error, both as
plists (an error is (:code :message :data)).")

(cl-defgeneric opendev-snapshot--send-sync (connection method params)
  "Send request METHOD with PARAMS on CONNECTION; return the result plist.
Signals `opendev-snapshot-error' with the error plist on an error answer.")

(cl-defgeneric opendev-snapshot--live-p (connection)
  "Non-nil while CONNECTION runs.")

(define-error 'opendev-snapshot-error "OpenDev snapshot server error")

;;; Text shown to people
;;
;; What a snapshot holds (project and notebook paths, a holder's host, the
;; server's error messages that quote them) reaches the echo area, the
;; minibuffer and buffers only through `opendev-snapshot-printable', as the
;; command line shows it (opendev_snapshot.core.text): an escape sequence,
;; a newline or a bidi override (which Emacs would obey, reordering the
;; line) is shown as an escape.  Money goes through
;; `opendev-snapshot-format-cost', as everywhere in OpenDev.  Both are
;; checked against the cases of tests/text_cases.py.

(defun opendev-snapshot--unsafe-char-p (char)
  "Non-nil for CHAR that must not reach the screen raw.
C0, DEL, C1, the line and paragraph separators, bidi embeddings,
overrides and isolates, the BOM, and surrogates."
  (or (< char #x20)
      (<= #x7f char #x9f)
      (memq char '(#x2028 #x2029 #xfeff))
      (<= #x202a char #x202e)
      (<= #x2066 char #x2069)
      (<= #xd800 char #xdfff)))

(defun opendev-snapshot--escape-char (char)
  (cond ((>= char #x3fff80)             ; a raw byte: text that was not UTF-8
         (format "\\udc%02x" (- char #x3fff00)))
        ((opendev-snapshot--unsafe-char-p char)
         (or (cdr (assq char '((?\t . "\\t") (?\n . "\\n") (?\r . "\\r") (?\e . "\\e"))))
             (format (if (< char #x100) "\\x%02x" "\\u%04x") char)))
        (t (string char))))

(defun opendev-snapshot-printable (text)
  "TEXT with every control character made visible as an escape.
ESC shows as \\e, a newline as \\n, C1 as \\x9b, a bidi override as
\\u202e, a byte that is not UTF-8 as \\udcff (as Python shows it).
nil is the empty string; another non-string is formatted with %s."
  (let ((s (cond ((null text) "") ((stringp text) text) (t (format "%s" text)))))
    (if (not (string-match-p "[^ -~]" s))
        s                               ; printable ASCII: the usual case
      (mapconcat #'opendev-snapshot--escape-char s ""))))

(defun opendev-snapshot--group-thousands (digits)
  (let ((n (length digits)) (out ""))
    (while (> n 3)
      (setq out (concat "," (substring digits (- n 3) n) out)
            n (- n 3)))
    (concat (substring digits 0 n) out)))

(defun opendev-snapshot-format-cost (usd)
  "USD as OpenDev shows money everywhere.
$0.00, <$0.01, $0.42, $1,234.50, -$3.25; \"$?\" when USD is no number."
  (if (not (numberp usd))
      "$?"
    (let ((v (float usd)))
      (cond
       ((isnan v) "$nan")
       ((= v 0) "$0.00")
       (t
        (let ((sign (if (< v 0) "-" "")) (v (abs v)))
          (cond
           ((= v 1.0e+INF) (concat sign "$inf"))
           ((< v 0.01) (concat sign "<$0.01"))
           (t
            ;; C's %.2f: the exact value, ties to even (as Python's)
            (let* ((fixed (format "%.2f" v))
                   (dot (string-match "\\." fixed)))
              (concat sign "$" (opendev-snapshot--group-thousands (substring fixed 0 dot))
                      (substring fixed dot)))))))))))

(defun opendev-snapshot--message (format-string &rest args)
  "`message' FORMAT-STRING with ARGS, made printable as a whole."
  (message "%s" (opendev-snapshot-printable (apply #'format-message format-string args))))

(defun opendev-snapshot--user-error (format-string &rest args)
  "`user-error' FORMAT-STRING with ARGS, made printable as a whole."
  (user-error "%s" (opendev-snapshot-printable (apply #'format-message format-string args))))

;;; Helpers

(defun opendev-snapshot--plist (value)
  "VALUE with every JSON object as a keyword plist.
lsp-mode gives hash tables."
  (cond ((hash-table-p value)
         (let (out)
           (maphash (lambda (k v)
                      (setq out (cons (opendev-snapshot--plist v)
                                      (cons (if (keywordp k) k (intern (concat ":" (format "%s" k)))) out))))
                    value)
           (nreverse out)))
        ((vectorp value) (vconcat (mapcar #'opendev-snapshot--plist value)))
        ((and (consp value) (keywordp (car value)))
         (cl-loop for (k v) on value by #'cddr append (list k (opendev-snapshot--plist v))))
        (t value)))

(defun opendev-snapshot--true-p (value)
  "Non-nil when VALUE is JSON true."
  (eq value t))

(defun opendev-snapshot--string (value)
  "VALUE when it is a non-empty string, else nil.
JSON null arrives in several shapes."
  (and (stringp value) (not (string-empty-p value)) value))

(defun opendev-snapshot--shell-quote (s)
  (if (string-match-p "\\`[[:alnum:]_./:=@%+-]+\\'" s)
      s
    (concat "'" (replace-regexp-in-string "'" "'\\\\''" s t t) "'")))

(defun opendev-snapshot-resume-command-line (session)
  "The resume command line for SESSION (a Listing plist)."
  (let ((line (or opendev-snapshot-resume-command "opendev --resume ${sessionId}")))
    (setq line (replace-regexp-in-string
                "\\${sessionId}" (opendev-snapshot--shell-quote (plist-get session :sessionId)) line t t))
    (replace-regexp-in-string
     "\\${projectDir}" (opendev-snapshot--shell-quote (or (plist-get session :projectDir) "")) line t t)))

(defun opendev-snapshot-command-program (line)
  "The program LINE runs: its first word after `VAR=value' words and `env'."
  (cl-loop for word in (split-string-and-unquote line)
           unless (or (string-match-p "\\`[[:alpha:]_][[:alnum:]_]*=" word) (equal word "env"))
           return (if (string-prefix-p "~" word) (expand-file-name word) word)
           finally return nil))

(defun opendev-snapshot-ipython-recover-command (session)
  "What to run in a notebook to get the code of SESSION's dead kernel back."
  (format "%%opendev recover %s" (plist-get session :sessionId)))

(defun opendev-snapshot--program-exists-p (program)
  (if (file-name-absolute-p program)
      (and (file-executable-p program) (not (file-directory-p program)))
    (executable-find program)))

(defun opendev-snapshot--age (ms)
  (let ((s (max 0 (/ ms 1000))))
    (cl-loop for (unit . size) in '(("day" . 86400) ("hour" . 3600) ("minute" . 60))
             when (>= s size)
             return (let ((n (/ s size))) (format "%d %s%s" n unit (if (= n 1) "" "s")))
             finally return (format "%d second%s" s (if (= s 1) "" "s")))))

(defun opendev-snapshot--now-ms () (truncate (* 1000 (float-time))))

(defun opendev-snapshot--notebook (session)
  (opendev-snapshot--string (plist-get session :notebook)))

(defun opendev-snapshot-describe (session)
  "One line for SESSION (a Listing plist)."
  (let ((count (plist-get session :messageCount)))
    (opendev-snapshot-printable
     (format "%s  %s%s, %s ago, %d message%s, %s  %s"
             (plist-get session :sessionId)
             (plist-get session :status)
             (if (equal (plist-get session :kind) "ipython") " notebook" "")
             (opendev-snapshot--age (- (opendev-snapshot--now-ms) (plist-get session :snapshotTimestampMs)))
             count (if (= count 1) "" "s")
             (opendev-snapshot-format-cost (plist-get session :costUsd))
             (or (opendev-snapshot--notebook session) (plist-get session :projectDir))))))

(defun opendev-snapshot-question (session)
  "The question asked about SESSION."
  (let ((count (plist-get session :messageCount)))
    (opendev-snapshot-printable
     (format "%s was interrupted %s ago: %d message%s, %s. Recover it?"
             (if (equal (plist-get session :kind) "ipython")
                 (format "Notebook session %s (%s)" (plist-get session :sessionId)
                         (file-name-nondirectory (or (opendev-snapshot--notebook session) "IPython")))
               (format "OpenDev session %s (%s)" (plist-get session :sessionId)
                       (file-name-nondirectory (directory-file-name (or (plist-get session :projectDir) "")))))
             (opendev-snapshot--age (- (opendev-snapshot--now-ms) (plist-get session :snapshotTimestampMs)))
             count (if (= count 1) "" "s")
             (opendev-snapshot-format-cost (plist-get session :costUsd))))))

(defun opendev-snapshot-parse-duration (text)
  "Milliseconds for TEXT like 90s, 30m, 12h, 7d; nil if malformed."
  (when (and text (string-match "\\`[[:space:]]*\\([0-9]+\\)[[:space:]]*\\([smhd]\\)[[:space:]]*\\'" text))
    (* (string-to-number (match-string 1 text))
       (cdr (assoc (match-string 2 text) '(("s" . 1000) ("m" . 60000) ("h" . 3600000) ("d" . 86400000)))))))

(defun opendev-snapshot--holder-text (err)
  (let ((holder (plist-get (plist-get err :data) :holder)))
    (if (and holder (listp holder) (plist-get holder :pid))
        (format " (pid %s%s)" (plist-get holder :pid)
                (if (plist-get holder :host) (format " on %s" (plist-get holder :host)) ""))
      "")))

(defun opendev-snapshot--uri-to-path (uri)
  (if (and (stringp uri) (string-prefix-p "file://" uri))
      (decode-coding-string (url-unhex-string (substring uri (length "file://"))) 'utf-8)
    uri))

;;; Connections

(defun opendev-snapshot--register (connection root)
  "Remember CONNECTION (started for project ROOT)."
  (when root
    (puthash connection (file-name-as-directory (expand-file-name root)) opendev-snapshot--roots))
  (cl-pushnew connection opendev-snapshot--connections))

(defun opendev-snapshot--forget (connection)
  (setq opendev-snapshot--connections (delq connection opendev-snapshot--connections))
  (setq opendev-snapshot--queue (cl-remove connection opendev-snapshot--queue :key #'car)))

(defun opendev-snapshot--root (connection)
  (gethash connection opendev-snapshot--roots))

(defun opendev-snapshot--connection (&optional noerror)
  "The server of the current project, else any running one."
  (setq opendev-snapshot--connections (cl-remove-if-not #'opendev-snapshot--live-p opendev-snapshot--connections))
  (let* ((here (file-name-as-directory (expand-file-name default-directory)))
         (mine (cl-remove-if-not (lambda (c) (let ((r (opendev-snapshot--root c))) (and r (string-prefix-p r here))))
                                 opendev-snapshot--connections)))
    (or (car (sort mine (lambda (a b) (> (length (opendev-snapshot--root a)) (length (opendev-snapshot--root b))))))
        (car opendev-snapshot--connections)
        (unless noerror
          (user-error "OpenDev: the snapshot server is not running (open a file of your project first)")))))

(defun opendev-snapshot--server-command ()
  "`opendev-snapshot-server-command' with `~' expanded in the program."
  (let ((program (car opendev-snapshot-server-command)))
    (cons (if (string-match-p "\\`~" program) (expand-file-name program) program)
          (cdr opendev-snapshot-server-command))))

(defvar opendev-snapshot--warned-missing-server nil)

(defun opendev-snapshot--missing-server-text ()
  (format "`%s' is not installed or not on `exec-path': install it (pip install /path/to/opendev-snapshot) or set `opendev-snapshot-server-command' to its path, e.g. (\"~/src/opendev-snapshot/.venv/bin/opendev-snapshot\" \"serve\")"
          (car (opendev-snapshot--server-command))))

(defun opendev-snapshot--server-present-p ()
  "Non-nil when the server program exists; else say how to install it (once)."
  (or (opendev-snapshot--program-exists-p (car (opendev-snapshot--server-command)))
      (progn
        (unless opendev-snapshot--warned-missing-server
          (setq opendev-snapshot--warned-missing-server t)
          (display-warning 'opendev-snapshot (opendev-snapshot--missing-server-text) :error))
        nil)))

(defun opendev-snapshot--initialization-options ()
  "The server's initializationOptions from the settings above."
  (append
   (list :prompt (if opendev-snapshot-prompt t :json-false)
         :maxPrompts opendev-snapshot-max-prompts
         :staleAfterMs opendev-snapshot-stale-after-ms)
   (when opendev-snapshot-directory
     (list :snapshotDir (expand-file-name opendev-snapshot-directory)))))

;;; The indicator

(defun opendev-snapshot--refresh-count (connection)
  "Count the interrupted sessions of CONNECTION's project for the mode line."
  (let ((root (opendev-snapshot--root connection)))
    (when root
      (opendev-snapshot--send
       connection "opendev/snapshot.listIncomplete" (list :projectDir root :status "interrupted")
       (lambda (result)
         (let ((sessions (append (plist-get result :sessions) nil)))
           (dolist (s sessions) (puthash (plist-get s :sessionId) s opendev-snapshot--known))
           (puthash root (length sessions) opendev-snapshot--counts)
           (force-mode-line-update t)))
       #'ignore))))

(defun opendev-snapshot-interrupted-count ()
  "Interrupted sessions of the current project (else of every open one).
Cheap: the mode line calls it on every redisplay."
  (let ((here (and default-directory (file-name-as-directory (expand-file-name default-directory))))
        (best nil) (total 0))
    (maphash (lambda (root count)
               (setq total (+ total count))
               (when (and here (string-prefix-p root here) (or (null best) (> (length root) (length (car best)))))
                 (setq best (cons root count))))
             opendev-snapshot--counts)
    (if best (cdr best) total)))

(defvar opendev-snapshot--mode-line-map
  (let ((map (make-sparse-keymap)))
    (define-key map [mode-line mouse-1] #'opendev-snapshot-sessions)
    map))

(defun opendev-snapshot-mode-line-string ()
  "The mode-line lighter: \" OpenDev:N\" while there are interrupted sessions.
Else the empty string."
  (let ((n (opendev-snapshot-interrupted-count)))
    (if (zerop n)
        ""
      (propertize (format " OpenDev:%d" n)
                  'help-echo (format "%d interrupted OpenDev session%s: mouse-1 lists them" n (if (= n 1) "" "s"))
                  'mouse-face 'mode-line-highlight
                  'local-map opendev-snapshot--mode-line-map))))

(defconst opendev-snapshot--mode-line-entry '(:eval (opendev-snapshot-mode-line-string)))

(defun opendev-snapshot--install-mode-line ()
  (when opendev-snapshot-mode-line
    (unless (member opendev-snapshot--mode-line-entry global-mode-string)
      (setq global-mode-string (append (if (listp global-mode-string) global-mode-string (list global-mode-string))
                                       (list opendev-snapshot--mode-line-entry))))))

;;; Actions

(defun opendev-snapshot--warn (format-string &rest args)
  "Show a problem the user must act on: in *Warnings*, which stays."
  (display-warning 'opendev-snapshot (opendev-snapshot-printable (apply #'format-message format-string args)) :error))

(defun opendev-snapshot--keep-outcome (text)
  "Keep TEXT (printable) for the top of the next question, if one waits."
  (setq opendev-snapshot--outcome (and opendev-snapshot--queue text)
        opendev-snapshot--awaiting nil))

(defun opendev-snapshot--outcome (format-string &rest args)
  "Say what an answer did (FORMAT-STRING with ARGS) in the echo area.
The next question starts with it too, since its minibuffer hides the echo area."
  (let ((text (opendev-snapshot-printable (apply #'format-message format-string args))))
    (message "%s" text)
    (opendev-snapshot--keep-outcome text)))

(defun opendev-snapshot-open-terminal (session line)
  "Open a terminal running LINE, the resume command of SESSION."
  (let* ((id (plist-get session :sessionId))
         (dir (plist-get session :projectDir))
         (default-directory (if (and dir (file-directory-p dir)) (file-name-as-directory dir) default-directory))
         (buffer (make-term (format "OpenDev %s" id) shell-file-name nil "-c" line)))
    (with-current-buffer buffer
      (term-char-mode)
      (setq opendev-snapshot-session id
            opendev-snapshot-command-line line))
    (pop-to-buffer buffer)
    buffer))

(defun opendev-snapshot--recover-notebook (session)
  (let* ((command (opendev-snapshot-ipython-recover-command session))
         (notebook (opendev-snapshot--notebook session))
         (id (plist-get session :sessionId)))
    (kill-new command)
    (with-help-window (format "*OpenDev recover %s*" id)
      (princ (format "Session %s was the IPython kernel of %s.\n\n"
                     id (opendev-snapshot-printable
                         (if notebook (format "the notebook %s" notebook)
                           (format "IPython in %s" (plist-get session :projectDir))))))
      (princ "To get its code back, run this in a new kernel of that notebook\n")
      (princ "(it is in the kill ring: C-y pastes it):\n\n")
      (princ (format "    %s\n\n" command))
      (princ "It puts the source of every cell the dead kernel ran into the next cell.\n"))
    ;; short, to fit the echo area: the help buffer has the full path
    (opendev-snapshot--outcome "OpenDev: %s was the kernel of %s: run %s in a new kernel there (C-y pastes it)"
                               id (if notebook (file-name-nondirectory notebook) "IPython")
                               command)
    command))

(defun opendev-snapshot-recover (session)
  "Carry out Recover for SESSION (what opendev/recoverSession asks for)."
  (let ((id (plist-get session :sessionId)))
    (if (equal (plist-get session :kind) "ipython")
        (progn (push id opendev-snapshot-recovered)
               (opendev-snapshot--recover-notebook session))
      (let* ((line (opendev-snapshot-resume-command-line session))
             (program (opendev-snapshot-command-program line)))
        (if (not (and program (opendev-snapshot--program-exists-p program)))
            (progn
              (opendev-snapshot--warn
               "Cannot resume %s: `%s' is not installed (not found on `exec-path').  Install the OpenDev agent, or set `opendev-snapshot-resume-command' (M-x customize-variable RET opendev-snapshot-resume-command), e.g. \"/path/to/opendev --resume ${sessionId}\".  The snapshot is kept."
               id (file-name-nondirectory (or program line)))
              (opendev-snapshot--keep-outcome
               (opendev-snapshot-printable
                (format-message "OpenDev: cannot resume %s: `%s' is not installed; the snapshot is kept (*Warnings* says how to fix it)"
                                id (file-name-nondirectory (or program line)))))
              nil)
          (push id opendev-snapshot-recovered)
          (setq opendev-snapshot--awaiting nil) ; the terminal is the outcome
          (opendev-snapshot-open-terminal session line)
          line)))))

(defun opendev-snapshot--execute (connection command session-id on-result on-error)
  (opendev-snapshot--send connection "workspace/executeCommand"
                          (list :command command :arguments (vector session-id))
                          on-result on-error))

(defun opendev-snapshot--discard (connection session-id)
  "Move SESSION-ID to the trash, then say how to undo it.
Or why nothing happened."
  (opendev-snapshot--execute
   connection "opendev.snapshot.discard" session-id
   (lambda (result)
     (if (opendev-snapshot--true-p (plist-get result :removed))
         (progn
           (setq opendev-snapshot--last-discarded session-id)
           (opendev-snapshot--outcome "OpenDev: discarded %s (moved to the trash); undo: M-x opendev-snapshot-restore" session-id))
       (opendev-snapshot--outcome "OpenDev: %s was already gone" session-id))
     (opendev-snapshot--refresh-count connection))
   (lambda (err)
     (if (eql (plist-get err :code) -32003)
         (opendev-snapshot--outcome "OpenDev: %s is running%s: nothing was discarded"
                                    session-id (opendev-snapshot--holder-text err))
       (opendev-snapshot--outcome "OpenDev: discarding %s failed: %s" session-id (plist-get err :message)))
     (opendev-snapshot--refresh-count connection))))

(defun opendev-snapshot--act (connection session choice)
  (when (member choice '("Recover" "Discard"))
    (setq opendev-snapshot--awaiting (float-time))) ; the next question waits for what this does
  (pcase choice
    ("Recover" (opendev-snapshot--execute connection "opendev.snapshot.recover" (plist-get session :sessionId)
                                          #'ignore
                                          (lambda (err) (opendev-snapshot--outcome "OpenDev: recover failed: %s" (plist-get err :message)))))
    ("Discard" (opendev-snapshot--discard connection (plist-get session :sessionId)))))

;;; Questions
;;
;; The server's window/showMessageRequest is answered at once (null: "not
;; now"), never with a minibuffer opened from the process filter.  The
;; question is queued and asked when Emacs is idle and no minibuffer is in
;; use; the answer is carried out with the server's commands.

(defun opendev-snapshot--user-busy-p ()
  "Non-nil when a question now could take keys meant for something else."
  (or (> (minibuffer-depth) 0)
      (active-minibuffer-window)
      (input-pending-p)
      executing-kbd-macro
      defining-kbd-macro
      opendev-snapshot--asking))

;; Idle means: no command for `opendev-snapshot-prompt-idle-seconds'.
;; Emacs's own idleness (`current-idle-time') covers the usual case; it
;; does not restart after an answer typed in a minibuffer opened by a timer,
;; so the time and command count of the last answer cover that one.

(defun opendev-snapshot--count-command ()
  (cl-incf opendev-snapshot--command-count))

(defun opendev-snapshot--idle-p ()
  "Non-nil when the user has not run a command for the idle time."
  (let ((idle (current-idle-time)))
    (or (and idle (>= (float-time idle) opendev-snapshot-prompt-idle-seconds))
        (and opendev-snapshot--answered
             (= (cdr opendev-snapshot--answered) opendev-snapshot--command-count)
             (>= (- (float-time) (car opendev-snapshot--answered)) opendev-snapshot-prompt-idle-seconds)))))

(defun opendev-snapshot--poll ()
  (cond ((null opendev-snapshot--queue) (opendev-snapshot--stop-timer))
        ((opendev-snapshot--idle-p) (opendev-snapshot-ask-when-idle))))

(defun opendev-snapshot--ensure-timer ()
  (when (and opendev-snapshot--queue (not opendev-snapshot--timer))
    (add-hook 'pre-command-hook #'opendev-snapshot--count-command)
    (setq opendev-snapshot--timer (run-with-timer 0.25 0.25 #'opendev-snapshot--poll))))

(defun opendev-snapshot--stop-timer ()
  (remove-hook 'pre-command-hook #'opendev-snapshot--count-command)
  (setq opendev-snapshot--answered nil)
  (when opendev-snapshot--timer
    (cancel-timer opendev-snapshot--timer)
    (setq opendev-snapshot--timer nil)))

(defun opendev-snapshot--still-interrupted (connection session)
  "SESSION as the server lists it now, if it is still interrupted, else nil."
  (condition-case nil
      (let ((result (opendev-snapshot--send-sync
                     connection "opendev/snapshot.listIncomplete"
                     (list :projectDir (or (opendev-snapshot--root connection) (plist-get session :projectDir))
                           :status "interrupted"))))
        (cl-find (plist-get session :sessionId) (append (plist-get result :sessions) nil)
                 :key (lambda (s) (plist-get s :sessionId)) :test #'equal))
    (error session)))

(defun opendev-snapshot--ask (connection session)
  ;; the question is snapshot text: given as an argument, so that
  ;; `format-prompt' runs neither `format' nor `substitute-command-keys' on it
  ;; what the last answer did first: the minibuffer hides the echo area
  (let* ((prompt (concat (if opendev-snapshot--outcome (concat opendev-snapshot--outcome "\n") "")
                         (format-prompt "%s" "Later" (opendev-snapshot-question session))))
         (answer "Later"))
    (setq opendev-snapshot--outcome nil)
    (setq opendev-snapshot--asking t)
    (unwind-protect
        (setq answer (or (with-local-quit
                           (completing-read prompt '("Recover" "Discard" "Later") nil t nil nil "Later"))
                         "Later"))
      (setq opendev-snapshot--asking nil))
    (push (list :id (plist-get session :sessionId) :prompt prompt :answer answer) opendev-snapshot-asked)
    (setq opendev-snapshot--answered (cons (float-time) opendev-snapshot--command-count))
    (opendev-snapshot--act connection session answer)))

(defun opendev-snapshot-ask-when-idle ()
  "Ask the next queued question, unless the user is busy.
Run when the user is idle."
  (cond
   ((null opendev-snapshot--queue) (opendev-snapshot--stop-timer))
   ((opendev-snapshot--user-busy-p) nil)
   ((and opendev-snapshot--awaiting
         (< (- (float-time) opendev-snapshot--awaiting) opendev-snapshot--outcome-wait))
    nil)                                ; what the last answer did comes first
   (t
    (let* ((item (pop opendev-snapshot--queue))
           (connection (car item)))
      (when (opendev-snapshot--live-p connection)
        ;; Ask only if it is still interrupted (it may have been resumed or
        ;; discarded elsewhere while the question waited), with fresh numbers.
        (let ((fresh (opendev-snapshot--still-interrupted connection (cdr item))))
          (when fresh
            (opendev-snapshot--ask connection fresh))))
      (unless opendev-snapshot--queue (opendev-snapshot--stop-timer))))))

(defun opendev-snapshot--enqueue (connection session)
  (unless (cl-find (plist-get session :sessionId) opendev-snapshot--queue
                   :key (lambda (item) (plist-get (cdr item) :sessionId)) :test #'equal)
    (setq opendev-snapshot--queue (append opendev-snapshot--queue (list (cons connection session))))
    (opendev-snapshot--ensure-timer)))

(defun opendev-snapshot--session-in (message)
  "The known session MESSAGE names.
The longest id that appears there as a word."
  (let (best)
    (maphash (lambda (id session)
               (when (and (string-match (concat "\\(?:\\`\\|[^[:alnum:]_.-]\\)" (regexp-quote id) "\\(?:\\'\\|[^[:alnum:]_-]\\)") message)
                          (or (null best) (> (length id) (length (plist-get best :sessionId)))))
                 (setq best session)))
             opendev-snapshot--known)
    best))

;;; What the front ends call for the server's messages

(defun opendev-snapshot--on-recoverable (connection params)
  "opendev/recoverableSessions from CONNECTION: remember, count, say so."
  (let* ((folder (plist-get params :workspaceFolder))
         (sessions (append (plist-get params :sessions) nil))
         (root (opendev-snapshot--uri-to-path (plist-get folder :uri))))
    (unless (opendev-snapshot--root connection)
      (opendev-snapshot--register connection root))
    (setf (alist-get (plist-get folder :uri) opendev-snapshot-recoverable nil nil #'equal) sessions)
    (dolist (s sessions) (puthash (plist-get s :sessionId) s opendev-snapshot--known))
    (let ((r (opendev-snapshot--root connection)))
      (when r (puthash r (max (length sessions) (gethash r opendev-snapshot--counts 0)) opendev-snapshot--counts)))
    (force-mode-line-update t)
    (opendev-snapshot--refresh-count connection)
    (opendev-snapshot--message "OpenDev: %d interrupted session%s in %s (M-x opendev-snapshot-sessions)"
                               (length sessions) (if (= (length sessions) 1) "" "s")
                               ;; eglot 1.9 names a folder by its full path
                               (file-name-nondirectory (directory-file-name (or (plist-get folder :name) "?"))))))

(defun opendev-snapshot--on-recover (_connection session)
  "opendev/recoverSession: recover SESSION (outside the process filter)."
  (run-at-time 0 nil #'opendev-snapshot-recover session))

(defun opendev-snapshot--on-question (connection message)
  "Queue the window/showMessageRequest MESSAGE from CONNECTION.
The answer to the server is null."
  (let ((session (opendev-snapshot--session-in (or message ""))))
    (if session
        (opendev-snapshot--enqueue connection session)
      (opendev-snapshot--message "OpenDev: %s (M-x opendev-snapshot-sessions)" message))
    nil))

;;; Commands

(defun opendev-snapshot--in-order (candidates)
  "A completion table of CANDIDATES that keeps their order.
The server sends sessions and trash entries newest first; without this
*Completions* (and cycling) would sort them alphabetically, by session id."
  (lambda (string predicate action)
    (if (eq action 'metadata)
        '(metadata (display-sort-function . identity) (cycle-sort-function . identity))
      (complete-with-action action candidates string predicate))))

;;;###autoload
(defun opendev-snapshot-sessions (&optional all)
  "Pick an incomplete session of this project, then Recover or Discard it.
With a prefix argument ALL, list the sessions of every project."
  (interactive "P")
  (let* ((connection (opendev-snapshot--connection))
         (result (opendev-snapshot--send-sync connection "opendev/snapshot.listIncomplete"
                                              (if all
                                                  (make-hash-table) ; {}: every project
                                                (list :projectDir (opendev-snapshot--root connection)))))
         (sessions (append (plist-get result :sessions) nil)))
    (dolist (s sessions) (puthash (plist-get s :sessionId) s opendev-snapshot--known))
    (if (null sessions)
        (opendev-snapshot--message "OpenDev: no incomplete sessions")
      (let* ((choices (mapcar (lambda (s) (cons (opendev-snapshot-describe s) s)) sessions))
             (session (cdr (assoc (completing-read "OpenDev session: " (opendev-snapshot--in-order choices) nil t)
                                  choices)))
             (action (completing-read (opendev-snapshot-printable
                                       (format "Session %s: Recover or Discard? " (plist-get session :sessionId)))
                                      '("Recover" "Discard") nil t)))
        (opendev-snapshot--act connection session action)))))

(defun opendev-snapshot--trash-entries (connection)
  (append (plist-get (opendev-snapshot--send-sync connection "opendev/snapshot.listTrash" (make-hash-table))
                     :entries)
          nil))

(defun opendev-snapshot--describe-trash-entry (entry)
  (let ((snapshot (plist-get entry :snapshot)))
    (opendev-snapshot-printable
     (format "%s  discarded %s ago%s  %s"
             (plist-get entry :sessionId)
             (opendev-snapshot--age (- (opendev-snapshot--now-ms) (or (plist-get entry :removedAtMs) 0)))
             (if (numberp (plist-get snapshot :costUsd))
                 (format ", %s" (opendev-snapshot-format-cost (plist-get snapshot :costUsd)))
               "")
             (or (plist-get snapshot :projectDir) "")))))

;;;###autoload
(defun opendev-snapshot-restore (session-id)
  "Bring SESSION-ID back from the trash (a unique prefix of an id will do).
Interactively, pick from the trash; RET takes the session discarded last."
  (interactive
   (let* ((entries (opendev-snapshot--trash-entries (opendev-snapshot--connection)))
          (choices (mapcar (lambda (e) (cons (opendev-snapshot--describe-trash-entry e) e)) entries))
          (default (or (car (cl-find opendev-snapshot--last-discarded choices
                                     :key (lambda (c) (plist-get (cdr c) :sessionId)) :test #'equal))
                       (caar choices))))
     (unless entries (user-error "OpenDev: the trash is empty"))
     (let ((picked (completing-read (format-prompt "Restore discarded session" default)
                                    (opendev-snapshot--in-order choices) nil nil nil nil default)))
       (list (if (assoc picked choices) (plist-get (cdr (assoc picked choices)) :sessionId) picked)))))
  (let* ((connection (opendev-snapshot--connection))
         (ids (delete-dups (mapcar (lambda (e) (plist-get e :sessionId)) (opendev-snapshot--trash-entries connection))))
         (matches (if (member session-id ids) (list session-id)
                    (cl-remove-if-not (lambda (id) (string-prefix-p session-id id)) ids)))
         (id (cond ((= (length matches) 1) (car matches))
                   ((null matches) session-id) ; the server says why
                   (t (opendev-snapshot--user-error "OpenDev: %s matches %s: give more of the id"
                                                    session-id (string-join matches ", "))))))
    (condition-case err
        (let ((listing (opendev-snapshot--send-sync connection "opendev/snapshot.restore" (list :sessionId id))))
          (opendev-snapshot--refresh-count connection)
          (opendev-snapshot--message "OpenDev: restored %s (%s)" id (or (plist-get listing :status) "back"))
          listing)
      (opendev-snapshot-error
       (let ((e (cdr err)))
         (opendev-snapshot--user-error "OpenDev: cannot restore %s: %s" id
                                       (pcase (plist-get e :code)
                                         (-32001 "it is not in the trash")
                                         (-32003 "a session with that id exists again; the trashed copy stays in the trash")
                                         (_ (plist-get e :message)))))))))

(defvar opendev-snapshot--token-counter 0)

(defun opendev-snapshot--cleanup (connection max-age-ms dry-run)
  (opendev-snapshot--send-sync
   connection "opendev/snapshot.cleanup"
   (list :maxAgeMs max-age-ms :dryRun (if dry-run t :json-false)
         :workDoneToken (format "opendev-cleanup-%d-%d" (emacs-pid)
                                (cl-incf opendev-snapshot--token-counter)))))

;;;###autoload
(defun opendev-snapshot-cleanup (age &optional force)
  "Move snapshots older than AGE (90s, 30m, 12h, 7d) to the trash.
Running sessions stay.
Shows how many would go and asks first, unless FORCE (prefix argument)."
  (interactive (list (read-string (format-prompt "Remove snapshots older than (90s, 30m, 12h, 7d)" "7d") nil nil "7d")
                     current-prefix-arg))
  (let ((ms (or (opendev-snapshot-parse-duration age)
                (opendev-snapshot--user-error "OpenDev: not an age: %s (use 90s, 30m, 12h, 7d)" age)))
        (connection (opendev-snapshot--connection)))
    (let ((preview (if force nil (opendev-snapshot--cleanup connection ms t))))
      (cond
       ((and preview (zerop (plist-get preview :removedCount)))
        (opendev-snapshot--message "OpenDev: no snapshot older than %s" age))
       ((or force
            (yes-or-no-p (opendev-snapshot-printable
                          (format "Move %d snapshot(s) older than %s to the trash (%s)? "
                                  (plist-get preview :removedCount) age
                                  (mapconcat #'identity (plist-get preview :sessionIds) ", ")))))
        (let ((r (opendev-snapshot--cleanup connection ms nil)))
          (opendev-snapshot--refresh-count connection)
          (opendev-snapshot--message "OpenDev: moved %d snapshot(s) older than %s to the trash (M-x opendev-snapshot-restore)"
                                     (plist-get r :removedCount) age)))))))

(defun opendev-snapshot--on-progress (token value)
  "Show cleanup progress ($/progress with our TOKEN)."
  (when (and (stringp token) (string-prefix-p "opendev-cleanup-" token))
    (opendev-snapshot--message "OpenDev cleanup: %s%s"
                               (or (plist-get value :title) (plist-get value :message) "")
                               (if (plist-get value :percentage) (format " (%d%%)" (plist-get value :percentage)) ""))))

(declare-function opendev-snapshot-eglot-register "opendev-snapshot-eglot")
(declare-function opendev-snapshot-lsp-register "opendev-snapshot-lsp")

;;;###autoload
(defun opendev-snapshot-setup (&optional front-end)
  "Register the snapshot server for `opendev-snapshot-modes'.
FRONT-END is `eglot' (the default) or `lsp-mode'."
  ;; Registered when the front end loads (M-x eglot or M-x lsp loads it), so
  ;; this costs nothing at start-up.
  (pcase (or front-end 'eglot)
    ('eglot (with-eval-after-load 'eglot
              (require 'opendev-snapshot-eglot)
              (opendev-snapshot-eglot-register)))
    ('lsp-mode (with-eval-after-load 'lsp-mode
                 (require 'opendev-snapshot-lsp)
                 (opendev-snapshot-lsp-register)))
    (other (user-error "OpenDev: unknown front end %S (use eglot or lsp-mode)" other)))
  (opendev-snapshot--install-mode-line))

(provide 'opendev-snapshot)
;;; opendev-snapshot.el ends here
