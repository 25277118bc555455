import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from patron.members.tests.kyc_factories import make_member, publish_sensitive, image_bytes
@pytest.mark.django_db
def test_render():
    publish_sensitive("1.0"); m = make_member(); c = Client(); c.force_login(m.user)
    r = c.post("/kyc/", {"name": "王大明", "id_number": "110101201001011234", "front": SimpleUploadedFile("a.jpg", b"xx")})
    html = r.content.decode(); i = html.index("<main"); print(html[i:i+6000])
