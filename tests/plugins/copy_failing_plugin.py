"""A plugin whose push-copy step fails: the push must be undone, not half done."""
from devpi.server.hooks import hookimpl


@hookimpl
def devpiserver_on_push_copy(tx, src, target, new_file_ids):
    raise RuntimeError("copy step broke")
