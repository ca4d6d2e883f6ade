"""演示账号 One web account per role for ``jingfang demo`` (issue 4)."""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa
from sqlmodel import Session

from jingfang.tables import pad
from registry.accounts import User, UserRole, hash_password
from registry.models import Region

DEMO_PASSWORD = "jingfang-demo"


def create_demo_users(engine, echo: Callable[[str], None] = print) -> list[tuple[str, str, str]]:
    """演示账号 Create the demo accounts that do not exist yet (an existing one is never changed): county admin on the county, the others on its first township.

    Returns (username, role, region_code) rows and prints how to log in. Synthetic data only.
    """
    with Session(engine) as session:
        county = session.exec(sa.select(Region.code).where(Region.level == "county").order_by(Region.code)).scalars().first()
        township = session.exec(sa.select(Region.code).where(Region.level == "township").order_by(Region.code)).scalars().first()
        if county is None or township is None:
            return []
        password_hash = hash_password(DEMO_PASSWORD)
        rows = [
            ("admin", UserRole.COUNTY_ADMIN.value, county, "县精防办管理员"),
            ("doctor", UserRole.TOWNSHIP_DOCTOR.value, township, "乡镇精防医生"),
            ("police", UserRole.POLICE.value, township, "派出所民警"),
            ("civil", UserRole.CIVIL_AFFAIRS.value, township, "民政专干"),
        ]
        created = []
        for username, role, region, name in rows:
            if session.get(User, username) is not None:
                continue  # an existing account is never changed (never a reset password: issue 18)
            session.add(User(username=username, password_hash=password_hash, role=role, region_code=region,
                             display_name=name, active=True))
            created.append((username, role, region, name))
        session.commit()
    echo("网页登录（先运行 jingfang serve，再打开 http://127.0.0.1:8000/）：")
    for username, role, region, _name in rows:
        if (username, role, region, _name) in created:
            echo(f"  {pad(UserRole(role).label, 14)}用户名 {username:<8} 密码 {DEMO_PASSWORD}  地区 {region}")
        else:
            echo(f"  用户名 {username} 已存在，未更改（密码不变）")
    return [(u, r, g) for u, r, g, _ in created]
