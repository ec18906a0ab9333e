"""Headings, numbers and dates of a delivered report in the subscription's language.

Numbers and dates go through Babel (CLDR data: ``1,234`` / ``2026年10月1日``). Headings are
looked up in a catalogue of the report tables' titles, column names and row labels; a heading
missing from it (a new column) is shown as it is, in English, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

BABEL_LOCALES = {"en": "en_US", "zh": "zh_Hans_CN"}

ZH: dict[str, str] = {
    # email wording
    "Report": "报告",
    "Period": "期间",
    "Program": "项目",
    "Generated": "生成时间",
    "Attachments": "附件",
    "Campaign results": "活动成效",
    "Retention": "会员留存",
    "Agents": "坐席绩效",
    "Complaints": "投诉",
    "Deliverability": "送达情况",
    "no run of this campaign was launched in the period": "本期间内该活动没有启动任何批次",
    "nothing to report for this period": "本期间没有可报告的内容",
    # campaign report
    "figure": "指标",
    "value": "数值",
    "runs": "批次",
    "goal": "目标",
    "enrolled": "入组人数",
    "treatment": "干预组",
    "holdout": "对照组",
    "conversions": "转化数",
    "treatment conversion rate": "干预组转化率",
    "holdout conversion rate": "对照组转化率",
    "absolute lift": "绝对提升",
    "relative lift": "相对提升",
    "p-value": "p 值",
    "Conversions by group": "各组转化",
    "group": "组别",
    "converted": "已转化",
    "rate": "比率",
    "95% CI": "95% 置信区间",
    "points": "积分",
    "amount": "金额",
    "mean hours to convert": "平均转化小时数",
    "median days to convert": "转化天数中位数",
    "Funnel per message step": "各消息步骤漏斗",
    "Funnel per call step": "各外呼步骤漏斗",
    "step": "步骤",
    "channel": "渠道",
    "created": "已创建",
    "skipped": "已跳过",
    "eligible": "可发送",
    "pending": "待发送",
    "unknown": "结果未知",
    "failed": "失败",
    "sent": "已发送",
    "delivered": "已送达",
    "bounced": "退信",
    "awaiting": "等待回执",
    "opened": "已打开",
    "clicked": "已点击",
    "converted (last touch)": "转化（最后接触）",
    "tasks": "任务",
    "open": "未结",
    "claimed": "已领取",
    "closed": "已关闭",
    "attempted": "已尝试",
    "reached by phone": "电话接通",
    "Skips by reason": "按原因统计的跳过",
    "reason": "原因",
    "messages": "消息数",
    "A/B variants": "A/B 版本",
    "variant": "版本",
    "recipients": "收件人",
    "difference vs first": "与首个版本之差",
    "95% CI of difference": "差值的 95% 置信区间",
    "Conversions by last touch": "按最后接触统计的转化",
    "Conversions by source": "按来源统计的转化",
    "source": "来源",
    # retention report
    "cohort": "批组",
    "due": "到期",
    "renewed": "已续费",
    "treatment due": "干预组到期",
    "treatment renewed": "干预组续费",
    "treatment rate": "干预组续费率",
    "contacted due": "已联系到期",
    "contacted renewed": "已联系续费",
    "contacted rate": "已联系续费率",
    "holdout due": "对照组到期",
    "holdout renewed": "对照组续费",
    "holdout rate": "对照组续费率",
    "lift": "提升",
    "95% CI of lift": "提升的 95% 置信区间",
    "all": "合计",
    # agents report
    "agent": "坐席",
    "calls": "通话数",
    "right-party contacts": "本人接通",
    "contact rate": "接通率",
    "conversion per contact": "每次接通转化",
    "avg handle s": "平均处理秒数",
    "verification rate": "身份核验率",
    "callbacks kept": "按时回拨",
    "follow-ups on time": "按时跟进",
    "follow-up breaches": "跟进违规",
    "escalation rate": "升级率",
    "ceiling": "上限",
    "plan": "计划",
    "dates": "日期",
    "target": "目标",
    "target from": "目标来源",
    "attainment": "达成率",
    "campaign": "活动",
    "task": "任务",
    "member": "会员",
    "agent state": "坐席状态",
    "team": "团队",
    "fallback": "转交",
    # complaints and deliverability
    "category": "类别",
    "complaints": "投诉数",
    "delivery rate": "送达率",
    "bounce rate": "退信率",
    "opt-outs": "退订",
    "spam reports": "垃圾邮件举报",
}

# Titles with a name or figure in them: (pattern, Chinese with the same groups).
ZH_TITLES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^Campaign (\S+)$", r"活动 \1"),
        (
            r"^Retention \((\S+)\) by cohort: renewals due vs renewed$",
            r"按批组统计的留存（\1）：到期与续费",
        ),
        (r"^Agents, (.*)$", r"坐席，\1"),
        (r"^Calls vs calling plan(.*)$", r"通话量与外呼计划对比\1"),
        (r"^Campaign calls vs the campaign's calling plan(.*)$", r"活动通话量与活动外呼计划对比\1"),
        (r"^Callbacks at risk(.*)$", r"有风险的回拨\1"),
        (r"^Deliverability by channel$", r"各渠道送达情况"),
        (r"^Suppressions added, by channel and reason$", r"按渠道和原因新增的屏蔽"),
        (r"^Complaints(.*)$", r"投诉\1"),
    )
)


@dataclass(frozen=True)
class Localizer:
    language: str

    @property
    def locale(self) -> str:
        return BABEL_LOCALES[self.language]

    def text(self, value: str) -> str:
        """A heading or label in the language (unchanged when not in the catalogue)."""
        if self.language != "zh":
            return value
        if value in ZH:
            return ZH[value]
        for pattern, replacement in ZH_TITLES:
            if pattern.match(value):
                return pattern.sub(replacement, value)
        return value

    def number(self, value: int | float | Decimal) -> str:
        if isinstance(value, float):
            return format_decimal(value, format="#,##0.###", locale=self.locale)
        return format_decimal(value, locale=self.locale)

    def day(self, value: date) -> str:
        return format_date(value, format="long", locale=self.locale)

    def moment(self, value: datetime, timezone: str) -> str:
        from zoneinfo import ZoneInfo

        return (
            format_datetime(
                value.astimezone(ZoneInfo(timezone)), format="medium", locale=self.locale
            )
            + f" {value.astimezone(ZoneInfo(timezone)).tzname()}"
        )

    def cell(self, value: Any) -> str:
        """A table cell: numbers and dates formatted for the locale, text as it is."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, int | float | Decimal):
            return self.number(value)
        if isinstance(value, datetime):
            return format_datetime(value, format="medium", locale=self.locale)
        if isinstance(value, date):
            return self.day(value)
        return str(value)


__all__ = ["BABEL_LOCALES", "Localizer"]
