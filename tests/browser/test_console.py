"""The web console in a real Chromium: chat as several users, see each reply's reason and
context, edit the persona there and see the change in the next reply; edit people and mood."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from conftest import Served


async def _open_console(browser: Browser, served: Served) -> Page:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(served.url + "/")
    await page.get_by_test_id("api-key").fill(served.admin_key)
    await page.get_by_test_id("use-key").click()
    await expect(page.get_by_test_id("key-status")).to_have_text("key accepted")
    await expect(page.get_by_test_id("socket-status")).to_have_text("in #general")
    await expect(page.locator("#agent-name")).to_have_text("Finnegan")
    assert errors == []
    return page


async def _say(page: Page, speaker: str, text: str) -> None:
    await page.get_by_test_id(f"speaker-{speaker}").click()
    await page.get_by_test_id("say-text").fill(text)
    await page.get_by_test_id("send").click()


async def test_chat_as_several_users_and_see_why_the_bot_answered(
    browser: Browser, served: Served
) -> None:
    page = await _open_console(browser, served)
    await _say(page, "ana", "@Finnegan hello from Ana")
    bot = page.get_by_test_id("bot-line")
    await expect(bot).to_have_count(1)
    await expect(bot.first.get_by_test_id("reason")).to_have_text("mention")
    context = bot.first.get_by_test_id("context")
    await context.locator("summary").click()
    await expect(context).to_contain_text("persona")
    await expect(context).to_contain_text("Finnegan")
    await expect(context).to_contain_text("relationship")

    await page.get_by_test_id("new-speaker").fill("cy")
    await page.get_by_test_id("add-speaker").click()
    await _say(page, "cy", "just chatting among ourselves")
    users = page.get_by_test_id("user-line")
    await expect(users).to_have_count(2)
    await expect(users.nth(1)).to_contain_text("cy")
    await expect(page.get_by_test_id("silence")).to_contain_text("stays silent")
    await _say(page, "bo", "@Finnegan and hello from Bo")
    await expect(bot).to_have_count(2)
    await expect(users.nth(2)).to_contain_text("Bo".lower())


async def test_a_persona_edit_in_the_console_shows_in_the_next_reply(
    browser: Browser, served: Served
) -> None:
    page = await _open_console(browser, served)
    await _say(page, "ana", "@Finnegan what do you collect?")
    bot = page.get_by_test_id("bot-line")
    await expect(bot).to_have_count(1)
    await expect(bot.first.get_by_test_id("text")).not_to_contain_text("marbles")

    await page.get_by_role("link", name="Persona").click()
    await page.get_by_test_id("persona-kind").select_option("trait")
    await page.get_by_test_id("persona-text").fill("collects rare blue marbles")
    await page.get_by_test_id("persona-add").click()
    items = page.get_by_test_id("persona-items")
    added = items.locator("input[value='collects rare blue marbles']")
    await expect(added).to_have_count(1)

    await page.get_by_role("link", name="Chat").click()
    await _say(page, "ana", "@Finnegan what do you collect now?")
    await expect(bot).to_have_count(2)
    await expect(bot.nth(1).get_by_test_id("text")).to_contain_text("blue marbles")

    # Edit the item in place: the next reply follows the edit.
    await page.get_by_role("link", name="Persona").click()
    await added.fill("collects rare green marbles")
    await added.locator("xpath=following-sibling::button[1]").click()
    await expect(page.get_by_test_id("notice")).to_have_text("saved")
    await page.get_by_role("link", name="Chat").click()
    await _say(page, "bo", "@Finnegan what do you collect today?")
    await expect(bot).to_have_count(3)
    await expect(bot.nth(2).get_by_test_id("text")).to_contain_text("green marbles")
    await expect(bot.nth(2).get_by_test_id("text")).not_to_contain_text("blue")


async def test_people_and_mood_are_edited_live(browser: Browser, served: Served) -> None:
    page = await _open_console(browser, served)
    await _say(page, "ana", "@Finnegan remember me")
    await expect(page.get_by_test_id("bot-line")).to_have_count(1)

    await page.get_by_role("link", name="People").click()
    await page.get_by_test_id("person-id").fill("console:ana")
    await page.get_by_test_id("person-load").click()
    await expect(page.get_by_test_id("person-summary")).to_contain_text("ana (console:ana)")
    form = page.get_by_test_id("relationship-form")
    await form.locator("input[name=anger]").fill("9")
    await page.get_by_test_id("relationship-save").click()
    await expect(page.get_by_test_id("notice")).to_have_text("saved")
    await expect(form.locator("input[name=anger]")).to_have_value("9")
    await page.get_by_test_id("fact-text").fill("Ana keeps bees")
    await page.get_by_test_id("fact-add").click()
    await expect(page.get_by_test_id("fact")).to_contain_text("Ana keeps bees")

    await page.get_by_role("link", name="Mood & state").click()
    mood = page.get_by_test_id("mood-form")
    await mood.locator("input[name=happiness]").fill("10")
    await page.get_by_test_id("mood-save").click()
    await expect(page.get_by_test_id("notice")).to_have_text("saved")
    await expect(page.get_by_test_id("state")).to_contain_text("daily_mood_happiness")

    # The next reply's assembled context carries the edits.
    await page.get_by_role("link", name="Chat").click()
    await _say(page, "ana", "@Finnegan how do you feel about me?")
    bot = page.get_by_test_id("bot-line")
    await expect(bot).to_have_count(2)
    context = bot.nth(1).get_by_test_id("context")
    await context.locator("summary").click()
    await expect(context).to_contain_text('"happiness":10')
    await expect(context).to_contain_text("Ana keeps bees")
