"""A plugin whose every hook raises: the server must go on as if it were not there."""
from devpi.server.hooks import hookimpl


class PluginBug(RuntimeError):
    pass


@hookimpl
def devpiserver_add_parser_options(parser):
    raise PluginBug("options")


@hookimpl
def devpiserver_configure(core):
    raise PluginBug("configure")


@hookimpl
def devpiserver_add_routes(app):
    raise PluginBug("routes")


@hookimpl
def devpiserver_auth_password(user, password):
    raise PluginBug("auth")


@hookimpl
def devpiserver_auth_groups(user):
    raise PluginBug("groups")


@hookimpl
def devpiserver_check_push(core, src, target):
    raise PluginBug("check push")


@hookimpl
def devpiserver_on_upload(serial, index, project, version, filename, rel):
    raise PluginBug("upload event")


@hookimpl
def devpiserver_web_project_extras(index, project):
    raise PluginBug("page extras")


@hookimpl
def devpiserver_wsgi_middleware(core):
    raise PluginBug("middleware")


@hookimpl
def devpiserver_shutdown():
    raise PluginBug("shutdown")
