"""``patron demo [--if-empty]``: data to try Patron with (OPS-1).

Creates the consent documents (terms, privacy, sensitive, marketing, version 1.0, in
Chinese and English), the staff roles, an administrator ``admin`` and a platform API key
(both secrets printed once), and three active demo members with verified phones, all
through the same services real data goes through. ``--if-empty`` does nothing when any
member exists, so ``make run`` can call it every time.
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from patron.api.keys import SCOPES, create_api_key
from patron.core import audit, clock
from patron.loyalty import demo as loyalty_demo
from patron.members.management.commands.createadmin import create_administrator
from patron.members.models import ConsentDocument, Member, User
from patron.members.roles import ensure_roles
from patron.members.services.registration import RegistrationInput, register_member
from patron.members.services.verification import mark_verified

DOCUMENTS = [
    {
        "kind": "terms",
        "required": True,
        "title": "会员服务协议",
        "body": (
            "欢迎成为 Patron 会员。本协议说明您与平台之间的权利和义务：您应年满 18 周岁，"
            "并提供真实、完整的注册信息；请妥善保管账户和密码，不得转让或出借账户；请遵守"
            "法律法规和平台规则，违规可能导致账户被冻结或注销。会员积分、等级和权益按平台"
            "公布的规则执行。您可以随时注销账户。"
        ),
        "title_en": "Membership agreement",
        "body_en": (
            "Welcome to Patron membership. This agreement sets out the rights and duties "
            "between you and the platform: you must be at least 18 and give true and complete "
            "registration information; keep your account and password safe and do not transfer "
            "or lend your account; follow the law and the platform rules, as breaches may lead "
            "to your account being frozen or cancelled. Points, tiers and benefits follow the "
            "rules the platform publishes. You may cancel your account at any time."
        ),
    },
    {
        "kind": "privacy",
        "required": True,
        "title": "隐私政策",
        "body": (
            "我们仅为提供会员服务所必需的目的收集您的个人信息（手机号、邮箱、姓名、地址等），"
            "加密存储，默认脱敏显示。未经您同意，我们不会向第三方提供您的个人信息。您可以"
            "查阅、复制、更正和删除您的信息，也可以注销账户。本政策更新时我们会通知您，并在"
            "您下次登录时请您确认新版本。"
        ),
        "title_en": "Privacy policy",
        "body_en": (
            "We collect your personal information (phone number, email, name, address and the "
            "like) only for what the membership service needs, store it encrypted and show it "
            "masked by default. We do not share it with third parties without your consent. You "
            "may see, copy, correct and delete your information, and cancel your account. When "
            "this policy changes we will tell you and ask you to accept the new version at your "
            "next sign-in."
        ),
    },
    {
        "kind": "sensitive",
        "required": False,
        "title": "敏感个人信息处理同意书",
        "body": (
            "实名认证需要处理您的身份证号码和身份证照片，这些属于敏感个人信息。我们仅将其用于"
            "核验您的身份，加密保存，只有经授权的审核人员可以查看，且每次查看都会被记录。"
            "您可以拒绝，但将无法完成实名认证。"
        ),
        "title_en": "Consent to process sensitive personal information",
        "body_en": (
            "Real-name verification needs your resident ID number and ID card photos, which are "
            "sensitive personal information. We use them only to verify your identity and store "
            "them encrypted; only authorised reviewers may see them, and every view is logged. "
            "You may refuse, but then real-name verification cannot be completed."
        ),
    },
    {
        "kind": "marketing",
        "required": False,
        "title": "营销信息订阅",
        "body": (
            "同意后，我们会通过短信、邮件或站内信向您发送优惠活动和新品信息。此项为可选，"
            "不影响您使用会员服务，您可以随时退订。"
        ),
        "title_en": "Marketing messages",
        "body_en": (
            "If you agree, we will send you offers and news about new products by SMS, email or "
            "in-app message. This is optional, does not affect your membership, and you can "
            "unsubscribe at any time."
        ),
    },
]

MEMBERS = [
    {
        "kind": "individual",
        "username": "demo_wang",
        "phone": "+8613800000001",
        "email": "wang.xiaoming@example.com",
        "name": "王小明",
        "birth_date": dt.date(1990, 5, 20),
        "address": "北京市朝阳区建国路 88 号",
        "marketing_opt_in": True,
    },
    {
        "kind": "individual",
        "username": "demo_li",
        "phone": "+8613900000002",
        "email": "li.na@example.com",
        "name": "李娜",
        "birth_date": dt.date(1985, 11, 2),
        "address": "上海市徐汇区漕溪北路 18 号",
        "language": "en",
    },
    {
        "kind": "enterprise",
        "username": "demo_starlight",
        "phone": "+8613700000003",
        "email": "office@starlight.example.com",
        "company_name": "星光影城（北京）有限公司",
        "credit_code": "91110000802100433B",
        "contact_name": "张伟",
        "address": "北京市海淀区中关村大街 1 号",
    },
]


def ensure_documents() -> list[ConsentDocument]:
    docs = []
    for spec in DOCUMENTS:
        doc, _ = ConsentDocument.objects.get_or_create(
            kind=spec["kind"],
            version="1.0",
            defaults={
                **{k: v for k, v in spec.items() if k != "kind"},
                "published_at": clock.now(),
            },
        )
        docs.append(doc)
    return docs


class Command(BaseCommand):
    help = "Create demo consent documents, roles, an administrator, an API key and members."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when any member exists"
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        if options["if_empty"] and Member.objects.exists():
            self.stdout.write("demo: members exist already; nothing to do")
            return
        lines: list[str] = []
        with transaction.atomic():
            docs = ensure_documents()
            accepted = [f"{d.kind}@{d.version}" for d in docs if d.required]
            ensure_roles()
            if User.objects.filter(username="admin").exists():
                lines.append("administrator 'admin' exists already (password unchanged)")
            else:
                _, password = create_administrator("admin")
                lines.append(f"administrator: admin / {password}")
            key = create_api_key(
                name="demo platform", scopes=sorted(SCOPES), actor=audit.Actor.system()
            )
            lines.append(f"API key (all scopes): {key.secret}")
            password = secrets.token_urlsafe(12)
            made = []
            created = []
            for spec in MEMBERS:
                if User.objects.filter(username=spec["username"]).exists():
                    continue
                member = register_member(
                    data=RegistrationInput(**spec, password=password, accepted=accepted),
                    channel="demo",
                    actor=audit.Actor.system(),
                )
                mark_verified(member=member, channel="phone", actor=audit.Actor.system())
                made.append(f"{spec['username']} ({member.number})")
                created.append(member)
            orders = loyalty_demo.seed(created, actor=audit.Actor.system())
            lines.append(f"loyalty: demo rewards catalog, {orders} demo orders")
            if made:
                lines.append(f"demo members: {', '.join(made)} / password {password}")
        self.stdout.write("demo data ready; these secrets are shown once, store them now:")
        for line in lines:
            self.stdout.write(f"  {line}")
