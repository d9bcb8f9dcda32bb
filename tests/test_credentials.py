import pytest

from reportguard.core.credentials import credential_missing, find_credentials

DISCLOSED = [
    ("text", "本实验室CMA证书编号：161912345678，欢迎寄样", "", "cma"),
    ("full-width", "ＣＭＡ编号 １６１９１２３４５６７８", "", "cma"),
    ("traditional", "資質認定證書編號 171500340012", "", "cma"),
    ("cnas", "已通过CNAS认可，注册号CNAS L1234", "", "cnas"),
    ("cnas spaced", "cnas: l 09876", "", "cnas"),
    ("cnas inspection body", "CNAS I0123 检验机构", "", "cnas"),
    ("authorisation", "本店已获广州质量监督检测研究院授权代理送检业务", "", "authorisation"),
    ("authorisation letter", "附 华测检测认证集团股份有限公司 授权书", "", "authorisation"),
    ("qualification cma", "专业检测", "161912345678", "cma"),
    ("qualification cnas", "专业检测", "CNAS L5678", "cnas"),
]


@pytest.mark.parametrize("case,text,qualification,kind", DISCLOSED, ids=[c[0] for c in DISCLOSED])
def test_disclosed_credentials_are_found(case, text, qualification, kind):
    assert kind in {c.kind for c in find_credentials(text, qualification)}
    assert not credential_missing(["testing_service"], text, qualification)


NOT_DISCLOSED = [
    ("no number", "正规第三方检测机构，有CMA资质，寄样7个工作日"),
    ("order number", "订单号202311280001请核对"),
    ("phone", "电话13812345678"),
    ("13 digits", "CMA 1619123456789"),
    ("bare 12 digits in text", "条码 690123456789"),
    ("unnamed authorisation", "有授权，放心"),
]


@pytest.mark.parametrize("case,text", NOT_DISCLOSED, ids=[c[0] for c in NOT_DISCLOSED])
def test_no_credential_is_invented(case, text):
    assert find_credentials(text) == []
    assert credential_missing(["testing_service"], text)


def test_rule_only_applies_to_testing_services():
    assert not credential_missing([], "无资质")
    assert not credential_missing(["report_sale"], "卖报告模板")
    assert credential_missing(["report_sale", "testing_service"], "代办检测报告")
