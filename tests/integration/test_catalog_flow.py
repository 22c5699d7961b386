"""A catalog edition published through the API reaches the column and search via Kafka."""

from tests.integration.conftest import wait_for
from tests.integration.test_pipeline import body, unique

COUNTY = "430104"  # 岳麓区: no other test localises it


def test_a_renamed_item_shows_its_new_name_everywhere(stack):
    tag = unique("cat")
    pid = stack.publish(body(f"审核结果公示 {tag}", region=COUNTY, level2="D14-02-03"))["publication_id"]
    wait_for(lambda: stack.visible(pid, query=tag))
    client = stack.client
    assert client.post(f"/v1/catalogs/{COUNTY}/2023/derive", json={}).status_code == 201
    assert client.patch(f"/v1/catalogs/{COUNTY}/2023", json={"rename": {"D14-02-03": "低保审核结果"}, "drop": ["D14-02-04"]}).status_code == 200
    assert client.post(f"/v1/catalogs/{COUNTY}/2023/publish").json()["reissued_publications"] == 1

    def renamed_everywhere():
        hits = stack.search(q=tag)["hits"]
        listing = client.get(f"/columns/{COUNTY}/D14/D14-02")
        return (
            hits
            and hits[0]["placements"][0]["level2_name"] == "低保审核结果"
            and "低保审核结果" in client.get(f"/publications/{pid}").text
            and "低保审核结果" in listing.text
            and "D14-02-04" not in listing.text
        )

    wait_for(renamed_everywhere, what="the new name in search, on the detail page and in the column's catalog")
    assert stack.column.entry(pid).version == 2
    # The county's pickers offer the localised catalog; its neighbours keep the standard one.
    assert client.get(f"/v1/regions/{COUNTY}/catalog").json()["edition"] == "2023"
    assert client.get("/v1/regions/430103/catalog").json()["scope"] == "standard"
