;;; opendev-snapshot-eglot.el --- The snapshot server through eglot  -*- lexical-binding: t; -*-

;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; SPDX-License-Identifier: MIT

;;; Commentary:

;; `opendev-snapshot-setup' (the default front end) loads this file: it
;; registers the server with eglot for `opendev-snapshot-modes' and hands
;; the server's messages to opendev-snapshot.el.  Works with eglot 1.9 on
;; Emacs 28 and the eglot built into Emacs 29.

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)
(require 'opendev-snapshot)

(defclass opendev-snapshot-server (eglot-lsp-server) ()
  :documentation "The opendev-snapshot server.")

(cl-defmethod eglot-initialization-options ((server opendev-snapshot-server))
  ;; eglot asks for these while connecting, with `default-directory' bound to
  ;; the project root: remember the server and its root.
  (opendev-snapshot--register server default-directory)
  (opendev-snapshot--initialization-options))

(defun opendev-snapshot-eglot--contact (&optional _interactive)
  "The eglot contact: our server class and `opendev-snapshot-server-command'."
  (unless (opendev-snapshot--program-exists-p (car (opendev-snapshot--server-command)))
    (user-error "OpenDev: %s" (opendev-snapshot--missing-server-text)))
  (cons 'opendev-snapshot-server (opendev-snapshot--server-command)))

(defun opendev-snapshot-eglot-register ()
  "Register the snapshot server with eglot for `opendev-snapshot-modes'."
  (setq eglot-server-programs
        (cons (cons opendev-snapshot-modes #'opendev-snapshot-eglot--contact)
              (cl-remove #'opendev-snapshot-eglot--contact eglot-server-programs :key #'cdr))))

;;; The connection

(cl-defmethod opendev-snapshot--send ((server opendev-snapshot-server) method params on-result on-error)
  (jsonrpc-async-request server (intern method) params
                         :success-fn on-result
                         :error-fn on-error
                         :timeout-fn (lambda () (funcall on-error (list :code -32603 :message "no answer")))))

(cl-defmethod opendev-snapshot--send-sync ((server opendev-snapshot-server) method params)
  (condition-case err
      (jsonrpc-request server (intern method) params)
    (jsonrpc-error
     (signal 'opendev-snapshot-error
             (list :code (alist-get 'jsonrpc-error-code (cdr err))
                   :message (alist-get 'jsonrpc-error-message (cdr err))
                   :data (alist-get 'jsonrpc-error-data (cdr err)))))))

(cl-defmethod opendev-snapshot--live-p ((server opendev-snapshot-server))
  (jsonrpc-running-p server))

;;; Server to client

(cl-defmethod eglot-handle-notification
  ((server opendev-snapshot-server) (_method (eql opendev/recoverableSessions)) &key workspaceFolder sessions)
  "Remember the interrupted SESSIONS of WORKSPACEFOLDER and say so."
  (opendev-snapshot--on-recoverable server (list :workspaceFolder workspaceFolder :sessions sessions)))

(cl-defmethod eglot-handle-notification
  ((server opendev-snapshot-server) (_method (eql opendev/recoverSession)) &key session)
  "Recover SESSION as its kind asks."
  (opendev-snapshot--on-recover server session))

(cl-defmethod eglot-handle-notification
  ((_server opendev-snapshot-server) (_method (eql $/progress)) &key token value)
  "Show cleanup progress."
  (opendev-snapshot--on-progress token value))

(cl-defmethod eglot-handle-request
  ((server opendev-snapshot-server) (_method (eql window/showMessageRequest)) &key message &allow-other-keys)
  "Queue the question in MESSAGE for an idle moment; answer null at once.
eglot's own handler would open a minibuffer from the process filter, with
the first action (Recover) pre-filled."
  (opendev-snapshot--on-question server message))

(provide 'opendev-snapshot-eglot)
;;; opendev-snapshot-eglot.el ends here
