"""Partner departments that answer economic-verification requests (SPEC §1, §3).

The codes are part of the wire contract (`lifeline.partner.requests.v1` is keyed by them).
"""
from __future__ import annotations

DEPARTMENTS: dict[str, str] = {
    "hrss": "人力资源和社会保障局",
    "medical_insurance": "医疗保障局",
    "health": "卫生健康委员会",
    "education": "教育局",
    "housing": "住房和城乡建设局",
    "public_security": "公安局",
    "market_regulation": "市场监督管理局",
    "tax": "税务局",
    "housing_fund": "住房公积金管理中心",
    "bank": "银行",
    "disabled_persons": "残疾人联合会",
    "emergency": "应急管理局",
}

