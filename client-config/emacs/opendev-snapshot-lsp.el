;;; opendev-snapshot-lsp.el --- The snapshot server through lsp-mode  -*- lexical-binding: t; -*-

;; Package-Requires: ((emacs "28.1") (lsp-mode "8.0"))
;; SPDX-License-Identifier: MIT

;;; Commentary:

;; `(opendev-snapshot-setup 'lsp-mode)' loads this file: it registers the
;; server as an lsp-mode add-on client for `opendev-snapshot-modes' (it runs
;; next to your usual language server) and hands the server's messages to
;; opendev-snapshot.el.

;;; Code:

(require 'cl-lib)
(require 'ht)
(require 'lsp-mode)
(require 'opendev-snapshot)

(defvar opendev-snapshot-lsp--starting-root nil
  "The project root of the server being started (lsp-mode computes the
initialization options in the buffer that starts it).")

(defun opendev-snapshot-lsp--initialization-options ()
  (setq opendev-snapshot-lsp--starting-root (ignore-errors (lsp-workspace-root)))
  (opendev-snapshot--initialization-options))

(defun opendev-snapshot-lsp--command ()
  ;; lsp-mode also calls this to see whether the server is there: say how to
  ;; install it (once), never signal.
  (opendev-snapshot--server-present-p)
  (opendev-snapshot--server-command))

(defun opendev-snapshot-lsp-register ()
  "Register the snapshot server with lsp-mode for `opendev-snapshot-modes'."
  (lsp-register-client
   (make-lsp-client
    :new-connection (lsp-stdio-connection #'opendev-snapshot-lsp--command)
    :major-modes opendev-snapshot-modes
    :server-id 'opendev-snapshot
    :add-on? t
    :priority -10
    :initialization-options #'opendev-snapshot-lsp--initialization-options
    :initialized-fn (lambda (workspace)
                      (opendev-snapshot--register workspace opendev-snapshot-lsp--starting-root))
    :notification-handlers
    (ht ("opendev/recoverableSessions"
         (lambda (workspace params) (opendev-snapshot--on-recoverable workspace (opendev-snapshot--plist params))))
        ("opendev/recoverSession"
         (lambda (workspace params)
           (opendev-snapshot--on-recover workspace (plist-get (opendev-snapshot--plist params) :session)))))
    :request-handlers
    ;; lsp-mode's own handler would open a minibuffer from the process
    ;; filter; queue the question for an idle moment, answer null at once.
    (ht ("window/showMessageRequest"
         (lambda (workspace params)
           (opendev-snapshot--on-question workspace (plist-get (opendev-snapshot--plist params) :message))))))))

(add-hook 'lsp-after-uninitialized-functions #'opendev-snapshot--forget)

;;; The connection

(cl-defmethod opendev-snapshot--send ((workspace lsp--workspace) method params on-result on-error)
  (with-lsp-workspace workspace
    (lsp-request-async method params
                       (lambda (result) (funcall on-result (opendev-snapshot--plist result)))
                       :mode 'detached
                       :error-handler (lambda (err) (funcall on-error (opendev-snapshot--plist err))))))

(cl-defmethod opendev-snapshot--send-sync ((workspace lsp--workspace) method params)
  (let (done result error)
    (opendev-snapshot--send workspace method params
                            (lambda (r) (setq done t result r))
                            (lambda (e) (setq done t error e)))
    (with-timeout (10 (signal 'opendev-snapshot-error (list :code -32603 :message (format "no answer to %s" method))))
      (while (not done) (accept-process-output nil 0.05)))
    (when error (signal 'opendev-snapshot-error error))
    result))

(cl-defmethod opendev-snapshot--live-p ((workspace lsp--workspace))
  (and (memq workspace opendev-snapshot--connections) t))

(provide 'opendev-snapshot-lsp)
;;; opendev-snapshot-lsp.el ends here
