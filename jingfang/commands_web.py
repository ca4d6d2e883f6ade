"""网页命令 ``jingfang serve`` and ``jingfang user add`` (issue 4)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from jingfang.options import DbOption, engine_for, report_errors

user_app = typer.Typer(help="管理网页账号。", no_args_is_help=True)


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
        typer.echo(f"精防网页已启动（{workers} 个进程）：http://{host}:{port}/ （接口文档 http://{host}:{port}/api/docs）")
        raise typer.Exit(serving.run("registry.web.app:app_from_env", host=host, port=port, workers=workers,
                                     log_level="warning", access_log=False))
    from registry.web.app import create_app

    typer.echo(f"精防网页已启动：http://{host}:{port}/ （接口文档 http://{host}:{port}/api/docs）")
    uvicorn.run(create_app(engine), host=host, port=port, log_level="warning", access_log=False)


@user_app.command("add", help="新建账号：角色为县级管理员、乡镇精防医生、民警或民政专干之一，绑定一个地区。")
@report_errors
def user_add(
    username: Annotated[str, typer.Argument(help="用户名")],
    role: Annotated[str, typer.Option("--role", help="角色：县级管理员、乡镇精防医生、民警、民政专干（亦可写英文代码）")],
    region: Annotated[str, typer.Option("--region", help="绑定的地区编码（其下级地区一并可见）")],
    password: Annotated[Optional[str], typer.Option("--password", help="密码（至少8位；省略时交互输入）")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="显示姓名")] = None,
    db: DbOption = None,
) -> None:
    """新建账号：绑定一个角色和一个地区的网页账号。"""
    from registry.accounts import UserRole, add_user

    if password is None:
        password = typer.prompt("密码", hide_input=True, confirmation_prompt=True)
    user = add_user(engine_for(db), username=username, password=password, role=role, region_code=region, display_name=name)
    typer.echo(f"已创建账号 {user.username}（{UserRole(user.role).label}，地区 {user.region_code}）")
