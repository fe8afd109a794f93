"""The `onboard chat` terminal UI (Textual): app.py the chat app, widgets.py its widgets and
dialogs, feedback.py its rating and copy actions, chat.tcss its styles."""
