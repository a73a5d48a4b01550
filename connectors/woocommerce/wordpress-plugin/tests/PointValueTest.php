<?php
/**
 * What points are worth, and what a combination offer gives, wherever the plugin shows points:
 * My Account, the cart's points line and the cart's rewards box.
 *
 * @package Stammkunde
 */

// phpcs:disable

use PHPUnit\Framework\TestCase;

final class PointValueTest extends TestCase {

	protected function setUp(): void {
		SK::reset();
		SK::configure();
	}

	private static function member_with_an_offer() {
		$view = json_decode( file_get_contents( __DIR__ . '/fixtures/member-view.json' ), true );
		$view['affordable'][] = array(
			'affordable' => true, 'amount' => null, 'id' => '0f1e2d3c4b5a', 'kind' => 'buy_x_get_y', 'missing' => 0,
			'name' => 'Kaffee-Kombi', 'percent' => null, 'points' => 800,
			'description' => 'Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse gratis',
		);
		$view['codes'][1]['description'] = 'Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse gratis';
		return $view;
	}

	public function test_my_account_says_what_the_available_points_are_worth_and_what_an_offer_gives() {
		SK::$user_id = 42;
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 200, self::member_with_an_offer() ) ) );

		ob_start();
		( new Stammkunde_Account() )->render();
		$html = ob_get_clean();

		$this->assertStringContainsString( "<p class=\"stammkunde-available-value\">1.200 Punkte ≈ 12,00\u{00A0}€</p>", $html );
		$this->assertStringContainsString( '<p class="stammkunde-point-value">1 Punkt = 1 Cent</p>', $html );
		// the offer among the rewards to redeem, and on its code
		$this->assertStringContainsString( 'value="Kaffee-Kombi"', $html );
		$this->assertSame( 2, substr_count( $html, '<span class="stammkunde-offer">Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse gratis</span>' ) );
	}

	public function test_cart_line_says_what_the_points_it_earns_are_worth() {
		SK::app( array( '/api/woocommerce/v1/cart-points' => array( 200, array( 'points' => 52, 'value' => array( 'amount' => '0.52', 'currency' => 'EUR' ), 'value_text' => "52 Punkte ≈ 0,52\u{00A0}€" ) ) ) );
		WC()->cart->contents_total = 52.0;

		ob_start();
		( new Stammkunde_Cart() )->render_cart_points();
		$html = ob_get_clean();

		$this->assertStringContainsString( "You earn 52 points with this cart. <span class=\"stammkunde-point-value\">(52 Punkte ≈ 0,52\u{00A0}€)</span>", $html );
		// the visitor's language goes with the request, so the app words the value in it
		$this->assertStringContainsString( 'lang=de', SK::$requests[0]['url'] );
	}

	public function test_cart_line_without_a_point_value_shows_only_the_points() {
		SK::app( array( '/api/woocommerce/v1/cart-points' => array( 200, array( 'points' => 52, 'value' => null, 'value_text' => null ) ) ) );
		WC()->cart->contents_total = 52.0;

		ob_start();
		( new Stammkunde_Cart() )->render_cart_points();
		$html = ob_get_clean();

		$this->assertStringContainsString( 'You earn 52 points with this cart.</td>', $html );
		$this->assertStringNotContainsString( 'stammkunde-point-value', $html );
	}

	public function test_cart_rewards_box_says_what_the_balance_is_worth() {
		SK::$user_id = 42;
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 200, self::member_with_an_offer() ) ) );

		ob_start();
		( new Stammkunde_Cart() )->render_rewards();
		$html = ob_get_clean();

		$this->assertStringContainsString( "You have 1.200 points. <span class=\"stammkunde-point-value\">(1.200 Punkte ≈ 12,00\u{00A0}€)</span>", $html );
	}
}
