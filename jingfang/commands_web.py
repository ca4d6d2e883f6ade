"""网页命令 ``jingfang serve`` and ``jingfang user`` (issue 4; account lifecycle issue 18).

Every account change is audited with the operating-system user as the actor (``cli:<user>``).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from jingfang.options import DbOption, engine_for, report_errors

user_app = typer.Typer(help="管理网页账号。", no_args_is_help=True)
sessions_app = typer.Typer(help="管理账号的登录会话。", no_args_is_help=True)
user_app.add_typer(sessions_app, name="sessions")


def register(app: typer.Typer) -> None:
    """命令注册 Add ``serve`` and ``user`` to the ``jingfang`` app."""
    app.command("serve", help="启动网页与 JSON 接口（FastAPI + uvicorn）。")(serve)
    app.add_typer(user_app, name="user")


@report_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="监听地址")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="端口")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="进程数（>1 时按 JINGFANG_DATABASE_URL 各自连接）")] = 1,
    db: DbOption = None,
) -> None:
    """启动网页与 JSON 接口。"""
    import uvicorn

    from registry.config import export_for_children

    engine = engine_for(db)  # creates / upgrades the schema once, before serving
    if workers > 1:  # one SO_REUSEPORT socket per worker process (registry.web.serving)
        from registry.web import serving

        export_for_children(database_url=engine.url.render_as_string(hide_password=False))
        typer.echo(f"精防网页已启动（{workers} 个进程）：http://{host}:{port}/ （接口说明 http://{host}:{port}/openapi.json）")
        raise typer.Exit(serving.run("registry.web.app:app_from_env", host=host, port=port, workers=workers,
                                     log_level="warning", access_log=False))
    from registry.web.app import create_app

    typer.echo(f"精防网页已启动：http://{host}:{port}/ （接口说明 http://{host}:{port}/openapi.json）")
    uvicorn.run(create_app(engine), host=host, port=port, log_level="warning", access_log=False)


@user_app.command("add", help="新建账号：角色为县级管理员、乡镇精防医生、民警、民政专干、综治干部或村(社区)干部之一，绑定一个地区。")
@report_errors
def user_add(
    username: Annotated[str, typer.Argument(help="用户名")],
    role: Annotated[str, typer.Option("--role", help="角色：县级管理员、乡镇精防医生、民警、民政专干、综治干部、村(社区)干部（亦可写英文代码）")],
    region: Annotated[str, typer.Option("--region", help="绑定的地区编码（其下级地区一并可见）")],
    password: Annotated[Optional[str], typer.Option("--password", help="密码（至少10位，不含用户名，非常见密码；省略时交互输入）")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="从标准输入读取密码（一行）")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="显示姓名")] = None,
    db: DbOption = None,
) -> None:
    """新建账号：绑定一个角色和一个地区的网页账号（地区的级别须与角色相符）。"""
    from registry.accounts import UserRole, add_user

    password = _password(password, password_stdin)
    user = add_user(engine_for(db), username=username, password=password, role=role, region_code=region, display_name=name,
                    actor=cli_actor(), source="cli")
    typer.echo(f"已创建账号 {user.username}（{UserRole(user.role).label}，地区 {user.region_code}）")


def _password(password: str | None, from_stdin: bool) -> str:
    """The password from the option, standard input (one line) or a hidden prompt with confirmation."""
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if password is None:
        return typer.prompt("密码", hide_input=True, confirmation_prompt=True)
    return password


def cli_actor() -> str:
    from registry.audit import cli_actor as actor

    return actor()


@user_app.command("deactivate", help="停用账号：不能再登录，现有会话立即结束。")
@report_errors
def user_deactivate(username: Annotated[str, typer.Argument(help="用户名")], db: DbOption = None) -> None:
    """停用账号 Deactivate an account and end its sessions."""
    from registry.accounts import deactivate_user

    ended = deactivate_user(engine_for(db), username, actor=cli_actor())
    typer.echo(f"已停用账号 {username}，结束 {ended} 个会话")


@user_app.command("reset-password", help="重置密码（交互输入或 --password-stdin），并结束该账号的全部会话。")
@report_errors
def user_reset_password(
    username: Annotated[str, typer.Argument(help="用户名")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="从标准输入读取新密码（一行）")] = False,
    db: DbOption = None,
) -> None:
    """重置密码 Set a new password (policy applies) and end the account's sessions."""
    from registry.accounts import reset_password

    password = _password(None, password_stdin)
    ended = reset_password(engine_for(db), username, password, actor=cli_actor())
    typer.echo(f"已重置账号 {username} 的密码，结束 {ended} 个会话")


@user_app.command("set-role", help="更改账号的角色与地区（地区层级须与角色相符），并结束其会话。")
@report_errors
def user_set_role(
    username: Annotated[str, typer.Argument(help="用户名")],
    role: Annotated[str, typer.Argument(help="county_admin | township_doctor | police | civil_affairs | governance | village")],
    region: Annotated[str, typer.Option("--region", help="绑定的地区编码")],
    db: DbOption = None,
) -> None:
    """更改角色 Bind an account to another role and region."""
    from registry.accounts import UserRole, set_role

    user = set_role(engine_for(db), username, role, region, actor=cli_actor())
    typer.echo(f"账号 {user.username} 现为{UserRole(user.role).label}，地区 {user.region_code}")


@user_app.command("link", help="关联团队成员：民警、民政专干、村(社区)干部或精防医生账号对应其团队成员；省略成员编号则取消关联。")
@report_errors
def user_link(
    username: Annotated[str, typer.Argument(help="用户名")],
    member_id: Annotated[Optional[str], typer.Argument(help="团队成员编号（角色须与账号相符）")] = None,
    db: DbOption = None,
) -> None:
    """关联团队成员 Link an account to its team member (rules.md §6.1), or unlink it."""
    from registry.accounts import link_member

    user = link_member(engine_for(db), username, member_id, actor=cli_actor())
    typer.echo(f"账号 {user.username} 已关联团队成员 {user.member_id}" if user.member_id else f"账号 {user.username} 已取消关联团队成员")


@user_app.command("supervisor", help="设为负责人（派出所、民政办、综治）：可看本乡镇的名单；--off 取消。")
@report_errors
def user_supervisor(
    username: Annotated[str, typer.Argument(help="用户名")],
    off: Annotated[bool, typer.Option("--off", help="取消负责人")] = False,
    db: DbOption = None,
) -> None:
    """负责人 Flag an account as its township's supervisor (rules.md §6.1), or unflag it."""
    from registry.accounts import set_supervisor

    user = set_supervisor(engine_for(db), username, not off, actor=cli_actor())
    typer.echo(f"账号 {user.username} {'已设为负责人' if user.supervisor else '已取消负责人'}")


@sessions_app.command("revoke", help="结束该账号的全部登录会话。")
@report_errors
def user_sessions_revoke(username: Annotated[str, typer.Argument(help="用户名")], db: DbOption = None) -> None:
    """结束会话 End every session of an account."""
    from registry.accounts import revoke_sessions

    ended = revoke_sessions(engine_for(db), username, actor=cli_actor())
    typer.echo(f"已结束账号 {username} 的 {ended} 个会话")
