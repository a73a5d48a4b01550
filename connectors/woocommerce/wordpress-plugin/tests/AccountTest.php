<?php
/**
 * My Account → Punkte: what the member sees, and what they see when the app is down.
 *
 * @package Stammkunde
 */

// phpcs:disable

use PHPUnit\Framework\TestCase;

final class AccountTest extends TestCase {

	protected function setUp(): void {
		SK::reset();
		SK::configure();
		SK::$user_id = 42;
	}

	private static function fixture( $name ) {
		return json_decode( file_get_contents( __DIR__ . '/fixtures/' . $name ), true );
	}

	private function render() {
		ob_start();
		( new Stammkunde_Account() )->render();
		return ob_get_clean();
	}

	public function test_member_sees_balance_tier_rewards_codes_history_and_referral_link() {
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 200, self::fixture( 'member-view.json' ) ) ) );

		$html = $this->render();

		$this->assertStringContainsString( '<dd class="stammkunde-available">1.200</dd>', $html );
		$this->assertStringContainsString( '<dd class="stammkunde-pending">300</dd>', $html );
		$this->assertStringContainsString( '<dd class="stammkunde-tier">Silber</dd>', $html );
		$this->assertStringContainsString( '300 points become available on 16.12.2026, once the return period is over.', $html );
		$this->assertStringContainsString( '1 Punkt = 1 Cent', $html );
		$this->assertStringContainsString( "Spend 150,00\u{00A0}€ more to reach Gold.", $html );
		$this->assertStringContainsString( '<progress class="stammkunde-progress" max="100" value="80">', $html );
		// one redeem form per affordable reward, each with its own idempotency key
		$this->assertSame( 2, substr_count( $html, '<form method="post" class="stammkunde-redeem"' ) );
		$this->assertStringContainsString( 'name="stammkunde_reward" value="5 € Rabatt"', $html );
		$this->assertMatchesRegularExpression( '/name="stammkunde_key" value="[0-9a-f-]{36}"/', $html );
		$this->assertStringContainsString( '3.800 points more for “50 € Gutschein”.', $html );
		// codes: usable with the code, pending and failed with what it means
		$this->assertStringContainsString( '<strong>SK-QLS32ZMHPR</strong>', $html );
		$this->assertStringContainsString( 'Member discount of your tier', $html );
		$this->assertStringContainsString( 'Your code is being created. Reload this page in a moment.', $html );
		$this->assertStringContainsString( 'The shop could not create this code; your points were given back.', $html );
		// history says why
		$this->assertStringContainsString( '<td>+1.500</td><td>Bestellung #1001</td>', $html );
		$this->assertStringContainsString( '<td>-300</td><td>Eingelöst für die Prämie Gratisversand</td>', $html );
		// the referral link is the store's own, with the code that applies in the cart
		$this->assertStringContainsString( 'value="https://laden.example/?sk_ref=FREUND-ANNA-4821"', $html );
		$this->assertStringContainsString( 'Your friends get 10 % off their first order, and you get 500 points when they keep it.', $html );
	}

	/** The member view with `$change` applied to it, as the app would send it. */
	private function render_member( callable $change ) {
		$view = self::fixture( 'member-view.json' );
		$view = $change( $view );
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 200, $view ) ) );
		return $this->render();
	}

	/** A reward row of the view (shape of the fixture's), changed by `$fields`. */
	private static function reward( array $fields ) {
		return array_merge( self::fixture( 'member-view.json' )['rewards'][0], $fields );
	}

	/** A code row of the view (shape of the fixture's), changed by `$fields`. */
	private static function code( array $fields ) {
		return array_merge( self::fixture( 'member-view.json' )['codes'][1], $fields );
	}

	public function test_partner_voucher_with_an_empty_pool_is_listed_as_sold_out_without_a_redeem_button() {
		$html = $this->render_member(
			function ( $view ) {
				// the app: enough points, but the pool has no code left, so not affordable
				$view['rewards'][] = self::reward( array( 'id' => 'b1c2d3e4f5a6', 'kind' => 'partner_voucher', 'name' => 'Kino-Gutschein', 'points' => 800, 'affordable' => false, 'missing' => 0, 'in_stock' => false ) );
				return $view;
			}
		);

		$this->assertStringContainsString( '<p class="stammkunde-note stammkunde-sold-out">“Kino-Gutschein” is sold out at the moment.</p>', $html );
		$this->assertStringNotContainsString( 'value="Kino-Gutschein"', $html );
		$this->assertSame( 2, substr_count( $html, '<form method="post" class="stammkunde-redeem"' ) );
	}

	public function test_a_member_whose_only_reward_is_sold_out_is_told_so_not_that_there_are_no_rewards() {
		$html = $this->render_member(
			function ( $view ) {
				$view['rewards']     = array( self::reward( array( 'kind' => 'partner_voucher', 'name' => 'Kino-Gutschein', 'affordable' => false, 'in_stock' => false ) ) );
				$view['affordable']  = array();
				$view['next_reward'] = null;
				return $view;
			}
		);

		$this->assertStringContainsString( '“Kino-Gutschein” is sold out at the moment.', $html );
		$this->assertStringNotContainsString( 'There are no rewards at the moment.', $html );
		$this->assertStringNotContainsString( 'class="stammkunde-redeem"', $html );
	}

	public function test_referral_box_shows_friends_rewarded_and_the_next_step_in_points() {
		// the fixture: 3 friends rewarded, the step at the 5th gives 2,000 points
		$html = $this->render_member(
			function ( $view ) {
				return $view;
			}
		);

		$this->assertStringContainsString( '<p class="stammkunde-referral-progress">3 friends have brought you a referral reward so far. Your next step: with 2 more friends you get an extra 2.000 points.</p>', $html );
	}

	public function test_referral_box_shows_a_percent_step_as_a_lasting_member_discount() {
		$html = $this->render_member(
			function ( $view ) {
				$view['referral']['rewarded']  = 1;
				$view['referral']['next_step'] = array( 'count' => 2, 'member_discount_percent' => '7.5', 'points' => null, 'to_go' => 1 );
				return $view;
			}
		);

		$this->assertStringContainsString( '1 friend has brought you a referral reward so far. Your next step: with 1 more friend you get a lasting member discount of 7,5 %.', $html );
	}

	public function test_referral_box_without_rewarded_friends_or_steps_says_nothing_about_them() {
		$html = $this->render_member(
			function ( $view ) {
				$view['referral']['rewarded']  = 0;
				$view['referral']['next_step'] = null;
				return $view;
			}
		);

		$this->assertStringNotContainsString( 'stammkunde-referral-progress', $html );
		$this->assertStringContainsString( 'Your friends get 10 % off their first order', $html );
	}

	public function test_codes_are_labelled_by_what_they_are_and_a_used_or_taken_back_code_is_not_usable() {
		$html = $this->render_member(
			function ( $view ) {
				$view['codes'] = array(
					self::code( array( 'id' => 9, 'purpose' => 'partner_voucher', 'kind' => 'partner_voucher', 'reward' => 'Kino-Gutschein', 'code' => 'KINO-8F3K2' ) ),
					self::code( array( 'id' => 8, 'purpose' => 'referral_step', 'kind' => 'percentage', 'reward' => null, 'code' => 'SK-STEP-4F7Q', 'expires_at' => null ) ),
					self::code( array( 'id' => 7, 'purpose' => 'bounce_back', 'kind' => 'fixed_amount', 'reward' => null, 'code' => 'SK-BACK-9XK2', 'amount' => array( 'amount' => '5.00', 'currency' => 'EUR' ), 'expires_at' => '2027-01-31T10:00:00+00:00' ) ),
					// used, or taken back after its order was cancelled: the app says "ended" (and
					// sends no code; even if one came, the state decides)
					self::code( array( 'id' => 6, 'purpose' => 'bounce_back', 'kind' => 'fixed_amount', 'reward' => null, 'state' => 'ended', 'code' => 'SK-BACK-USED', 'amount' => array( 'amount' => '5.00', 'currency' => 'EUR' ) ) ),
					self::code( array( 'id' => 5, 'purpose' => 'bounce_back', 'kind' => 'percentage', 'reward' => null, 'state' => 'expired', 'code' => null ) ),
				);
				return $view;
			}
		);

		$this->assertStringContainsString( '<li class="stammkunde-code-usable"><span class="stammkunde-reward">Partner voucher: Kino-Gutschein</span> <span class="stammkunde-code">Code: <strong>KINO-8F3K2</strong></span>', $html );
		$this->assertStringContainsString( '<li class="stammkunde-code-usable"><span class="stammkunde-reward">Your lasting member discount for inviting friends, for you only</span> <span class="stammkunde-code">Code: <strong>SK-STEP-4F7Q</strong></span></li>', $html );
		$this->assertStringContainsString( "<span class=\"stammkunde-reward\">5,00\u{00A0}€ off your next order</span> <span class=\"stammkunde-code\">Code: <strong>SK-BACK-9XK2</strong></span> <span class=\"stammkunde-note\">valid until 31.01.2027</span>", $html );
		$this->assertStringContainsString( "<li class=\"stammkunde-code-ended\"><span class=\"stammkunde-reward\">5,00\u{00A0}€ off your next order</span> <span class=\"stammkunde-note\">no longer valid</span></li>", $html );
		$this->assertStringNotContainsString( 'SK-BACK-USED', $html );
		$this->assertStringContainsString( '<li class="stammkunde-code-expired"><span class="stammkunde-reward">Discount for your next order</span> <span class="stammkunde-note">expired</span></li>', $html );
		$this->assertStringNotContainsString( 'Discount code', $html );
	}

	public function test_app_that_cannot_be_reached_shows_the_page_without_a_balance_and_logs_why() {
		SK::$http = null;

		$html = $this->render();

		$this->assertStringContainsString( 'Your points cannot be shown right now. Please try again later.', $html );
		$this->assertStringNotContainsString( 'stammkunde-available', $html );
		$this->assertStringContainsString( 'Stammkunde: app unreachable', SK::log() );
	}

	public function test_customer_without_points_sees_what_the_program_offers() {
		SK::app(
			array(
				'/api/woocommerce/v1/customers/42' => array( 404, array( 'error' => 'unknown_customer' ) ),
				'/api/woocommerce/v1/program'      => array( 200, self::fixture( 'program-view.json' ) ),
			)
		);

		$html = $this->render();

		$this->assertStringContainsString( 'You collect points with your first order.', $html );
		$this->assertStringContainsString( '1 Punkt = 1 Cent', $html );
		$this->assertStringContainsString( '<span class="stammkunde-reward">Gratisversand</span> <span class="stammkunde-cost">300 points</span>', $html );
	}

	public function test_menu_gets_the_tab_before_log_out_and_activation_flushes_the_rewrite_rules() {
		$items = ( new Stammkunde_Account() )->menu_items( array( 'dashboard' => 'Dashboard', 'customer-logout' => 'Log out' ) );
		Stammkunde_Plugin::activate();

		$this->assertSame( array( 'dashboard', 'punkte', 'customer-logout' ), array_keys( $items ) );
		$this->assertSame( 'Points', $items['punkte'] );
		$this->assertSame( EP_ROOT | EP_PAGES, SK::$rewrite_endpoints['punkte'] );
		$this->assertSame( 1, SK::$flushed );
	}

	public function test_redeem_form_redeems_for_the_logged_in_user_and_redirects() {
		SK::app( array( '/api/woocommerce/v1/customers/42/redemptions' => array( 201, self::fixture( 'redemption-pending.json' ) ) ) );
		$_POST = array(
			'_stammkunde_nonce' => 'nonce-stammkunde_redeem',
			'stammkunde_reward' => 'Gratisversand',
			'stammkunde_key'    => '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8',
			'customer_id'       => '99', // whatever a browser sends, the user id decides
		);

		$this->handle();

		$this->assertSame( 'https://loyalty.example/api/woocommerce/v1/customers/42/redemptions?lang=de', SK::$requests[0]['url'] );
		$this->assertSame( array( 'reward' => 'Gratisversand', 'key' => '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8' ), json_decode( SK::$requests[0]['args']['body'], true ) );
		$this->assertSame( 'success', SK::$notices[0]['type'] );
		$this->assertSame( array( 'https://laden.example/mein-konto/punkte/' ), SK::$redirects );
	}

	public function test_redeem_form_with_a_stale_nonce_redeems_nothing() {
		SK::app( array() );
		SK::$nonce_ok = false;
		$_POST = array(
			'_stammkunde_nonce' => 'nonce-stammkunde_redeem',
			'stammkunde_reward' => 'Gratisversand',
			'stammkunde_key'    => '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8',
		);

		( new Stammkunde_Account() )->handle_redeem();

		$this->assertCount( 0, SK::$requests );
		$this->assertSame( 'error', SK::$notices[0]['type'] );
	}

	public function test_refused_redemption_shows_the_apps_reason() {
		SK::app( array( '/api/woocommerce/v1/customers/42/redemptions' => array( 422, array( 'error' => 'not_enough_points', 'message' => 'Sie haben nicht genug Punkte für „5 € Rabatt“.' ) ) ) );
		$_POST = array(
			'_stammkunde_nonce' => 'nonce-stammkunde_redeem',
			'stammkunde_reward' => '5 € Rabatt',
			'stammkunde_key'    => '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8',
		);

		$this->handle();

		$this->assertSame( array( 'notice' => 'Sie haben nicht genug Punkte für „5 € Rabatt“.', 'type' => 'error' ), SK::$notices[0] );
	}

	private function handle() {
		$account = new class() extends Stammkunde_Account {
			protected function stop() {
				throw new RuntimeException( 'redirected' );
			}
		};
		try {
			$account->handle_redeem();
			$this->fail( 'no redirect' );
		} catch ( RuntimeException $redirected ) {
			$this->assertSame( 'redirected', $redirected->getMessage() );
		}
	}
}
