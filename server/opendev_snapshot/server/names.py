"""Wire names of our methods, notifications and commands (import-free)."""

SAVE = "opendev/snapshot.save"
LOAD = "opendev/snapshot.load"
LIST_INCOMPLETE = "opendev/snapshot.listIncomplete"
CLEANUP = "opendev/snapshot.cleanup"
REMOVE = "opendev/snapshot.remove"
LIST_TRASH = "opendev/snapshot.listTrash"
RESTORE = "opendev/snapshot.restore"
MARK_COMPLETED = "opendev/snapshot.markCompleted"
RECORD_TOOL_RESULT = "opendev/snapshot.recordToolResult"
METHODS = (SAVE, LOAD, LIST_INCOMPLETE, CLEANUP, REMOVE, LIST_TRASH, RESTORE, MARK_COMPLETED, RECORD_TOOL_RESULT)

RECOVERABLE_SESSIONS = "opendev/recoverableSessions"
RECOVER_SESSION = "opendev/recoverSession"

CMD_RECOVER = "opendev.snapshot.recover"
CMD_DISCARD = "opendev.snapshot.discard"
CMD_RESTORE = "opendev.snapshot.restore"
CMD_LIST_INCOMPLETE = "opendev.snapshot.listIncomplete"
CMD_CLEANUP = "opendev.snapshot.cleanup"
COMMANDS = (CMD_RECOVER, CMD_DISCARD, CMD_RESTORE, CMD_LIST_INCOMPLETE, CMD_CLEANUP)
