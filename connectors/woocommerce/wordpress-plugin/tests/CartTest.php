<?php
/**
 * Product and cart pages, redeem-and-apply in the classic cart, and the referral parameter.
 *
 * @package Stammkunde
 */

// phpcs:disable

use PHPUnit\Framework\TestCase;

final class CartTest extends TestCase {

	protected function setUp(): void {
		SK::reset();
		SK::configure();
	}

	private static function fixture( $name ) {
		return json_decode( file_get_contents( __DIR__ . '/fixtures/' . $name ), true );
	}

	private static function sent( $index ) {
		return json_decode( SK::$requests[ $index ]['args']['body'], true );
	}

	public function test_product_page_says_what_the_product_earns_from_the_price_without_tax() {
		SK::app( array( '/api/woocommerce/v1/cart-points' => array( 200, array( 'points' => 20 ) ) ) );
		SK::$user_id = 42;
		SK::$options['woocommerce_prices_include_tax_bool'] = true;
		$GLOBALS['product'] = new SK_Product( 20.0, 23.8 );

		ob_start();
		( new Stammkunde_Cart() )->render_product_points();
		$html = ob_get_clean();

		$this->assertSame( '<p class="stammkunde-earn stammkunde-earn-product">Earn 20 points with this product.</p>', $html );
		$this->assertSame( array( 'customer_id' => '42', 'currency' => 'EUR', 'subtotal' => '23.80', 'tax' => '3.80' ), self::sent( 0 ) );
	}

	public function test_cart_says_what_it_earns_and_asks_once_per_amount() {
		SK::app( array( '/api/woocommerce/v1/cart-points' => array( 200, array( 'points' => 52 ) ) ) );
		WC()->cart->contents_total = 52.0;
		WC()->cart->contents_tax = 9.88;
		$cart = new Stammkunde_Cart();

		ob_start();
		$cart->render_cart_points();
		$cart->render_cart_points();
		$html = ob_get_clean();

		$this->assertStringContainsString( 'You earn 52 points with this cart.', $html );
		$this->assertSame( array( 'customer_id' => null, 'currency' => 'EUR', 'subtotal' => '52.00', 'tax' => '0.00' ), self::sent( 0 ) );
		$this->assertCount( 1, SK::$requests );
	}

	public function test_cart_sends_its_lines_so_product_rules_weigh_them_and_says_about() {
		// a cart (prices with tax) of a shirt variation and a gift card product, after discounts
		SK::app( array( '/api/woocommerce/v1/cart-points' => array( 200, array( 'points' => 50, 'estimate' => true, 'value_text' => null ) ) ) );
		SK::$user_id = 42;
		SK::$options['woocommerce_prices_include_tax_bool'] = true;
		WC()->cart->contents_total = 75.0;
		WC()->cart->contents_tax = 9.5;
		WC()->cart->cart_items = array(
			'a1' => array( 'product_id' => 31, 'variation_id' => 35, 'line_total' => 50.0, 'line_tax' => 9.5 ),
			'b2' => array( 'product_id' => 32, 'variation_id' => 0, 'line_total' => 25.0, 'line_tax' => 0.0 ),
		);

		ob_start();
		( new Stammkunde_Cart() )->render_cart_points();
		$html = ob_get_clean();

		// the app gets each line with its tax, and the cart says the points are an estimate
		$this->assertSame(
			array(
				'customer_id' => '42',
				'currency'    => 'EUR',
				'subtotal'    => '84.50',
				'tax'         => '9.50',
				'lines'       => array(
					array( 'product_id' => '31', 'variant_id' => '35', 'amount' => '59.50', 'tax' => '9.50' ),
					array( 'product_id' => '32', 'variant_id' => null, 'amount' => '25.00', 'tax' => '0.00' ),
				),
			),
			self::sent( 0 )
		);
		$this->assertStringContainsString( 'You earn about 50 points with this cart.', $html );
	}

	public function test_cart_lines_without_tax_in_prices_and_a_cart_too_long_to_weigh() {
		WC()->cart->cart_items = array( array( 'product_id' => 31, 'variation_id' => 0, 'line_total' => 42.0, 'line_tax' => 7.98 ) );
		$this->assertSame(
			array( array( 'product_id' => '31', 'variant_id' => null, 'amount' => '42.00', 'tax' => '0.00' ) ),
			Stammkunde_Cart::cart_amounts()['lines']
		);

		WC()->cart->cart_items = array_fill( 0, Stammkunde_Cart::MAX_LINES + 1, array( 'product_id' => 31, 'line_total' => 1.0 ) );
		$this->assertArrayNotHasKey( 'lines', Stammkunde_Cart::cart_amounts() );
	}

	public function test_an_exact_answer_says_no_about() {
		SK::app( array( '/api/woocommerce/v1/cart-points' => array( 200, array( 'points' => 70, 'estimate' => false ) ) ) );
		WC()->cart->contents_total = 75.0;
		WC()->cart->cart_items = array( array( 'product_id' => 31, 'variation_id' => 0, 'line_total' => 75.0, 'line_tax' => 0.0 ) );

		ob_start();
		( new Stammkunde_Cart() )->render_cart_points();
		$html = ob_get_clean();

		$this->assertStringContainsString( 'You earn 70 points with this cart.', $html );
		$this->assertSame( '75.00', self::sent( 0 )['lines'][0]['amount'] );
	}

	public function test_cart_shows_nothing_when_the_app_cannot_say() {
		SK::$http = null;
		WC()->cart->contents_total = 52.0;

		ob_start();
		( new Stammkunde_Cart() )->render_cart_points();
		$html = ob_get_clean();

		$this->assertSame( '', $html );
		$this->assertStringContainsString( 'Stammkunde: app unreachable', SK::log() );
	}

	public function test_cart_offers_the_members_codes_and_affordable_rewards() {
		SK::$user_id = 42;
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 200, self::fixture( 'member-view.json' ) ) ) );

		ob_start();
		( new Stammkunde_Cart() )->render_rewards();
		$html = ob_get_clean();

		$this->assertStringContainsString( 'You have 1.200 points.', $html );
		$this->assertSame( 2, substr_count( $html, 'class="stammkunde-apply"' ) );
		$this->assertStringContainsString( 'name="stammkunde_code" value="SK-QLS32ZMHPR"', $html );
		$this->assertStringContainsString( 'name="stammkunde_apply" value="1"', $html );
		$this->assertStringContainsString( 'Redeem and apply', $html );
	}

	public function test_redeem_and_apply_waits_for_the_code_then_applies_it() {
		SK::$user_id = 42;
		$cart = new Stammkunde_Cart();
		// the app took the points; its job has not created the code yet
		$cart->apply_or_wait( self::fixture( 'redemption-pending.json' ) );
		$this->assertSame( 1, WC()->session->get( Stammkunde_Cart::SESSION_PENDING )['redemption_id'] );
		$this->assertSame( array(), WC()->cart->applied );

		// a few seconds later the store holds the code and the app says so
		SK::$coupons['sk-qls32zmhpr'] = 31;
		SK::app( array( '/api/woocommerce/v1/customers/42/redemptions/1' => array( 200, self::fixture( 'redemption-created.json' ) ) ) );
		$applied = $cart->apply_waiting();

		$this->assertTrue( $applied );
		$this->assertSame( array( 'sk-qls32zmhpr' ), WC()->cart->applied );
		$this->assertNull( WC()->session->get( Stammkunde_Cart::SESSION_PENDING ) );
	}

	public function test_cart_page_reloads_while_the_code_is_being_created_at_most_ten_times() {
		SK::$user_id = 42;
		$cart = new Stammkunde_Cart();
		$cart->apply_or_wait( self::fixture( 'redemption-pending.json' ) );

		ob_start();
		for ( $i = 0; $i < 12; $i++ ) {
			$cart->render_pending();
		}
		$html = ob_get_clean();

		$this->assertSame( 10, substr_count( $html, 'window.location.reload()' ) );
	}

	public function test_apply_takes_only_the_members_own_usable_codes() {
		SK::$user_id = 42;
		SK::$coupons['sk-qls32zmhpr'] = 31;
		SK::$coupons['someone-elses'] = 32;
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 200, self::fixture( 'member-view.json' ) ) ) );
		$cart = new Stammkunde_Cart();

		$_POST = array( '_stammkunde_apply_nonce' => 'nonce-stammkunde_apply', 'stammkunde_code' => 'someone-elses' );
		$cart->handle_request();
		$_POST = array( '_stammkunde_apply_nonce' => 'nonce-stammkunde_apply', 'stammkunde_code' => 'sk-qls32zmhpr' );
		$cart->handle_request();

		$this->assertSame( array( 'sk-qls32zmhpr' ), WC()->cart->applied );
		$this->assertSame( array( 'notice' => 'This code is not one of your rewards.', 'type' => 'error' ), SK::$notices[0] );
	}

	public function test_referral_link_keeps_the_friends_code_and_applies_it_once_the_cart_has_items() {
		SK::$coupons['freund-anna-4821'] = 40;
		SK::app( array( '/api/woocommerce/v1/referral-codes/FREUND-ANNA-4821' => array( 200, array( 'code' => 'FREUND-ANNA-4821', 'kind' => 'percentage', 'value' => '10', 'currency' => 'EUR', 'minimum_amount' => null ) ) ) );
		$cart = new Stammkunde_Cart();

		// a visitor opens the member's link with an empty cart
		$_GET = array( 'sk_ref' => 'FREUND-ANNA-4821' );
		$cart->handle_request();
		$this->assertSame( 'FREUND-ANNA-4821', WC()->session->get( Stammkunde_Cart::SESSION_FRIEND ) );
		$this->assertTrue( WC()->session->has_session() );
		$this->assertSame( array(), WC()->cart->applied );
		$this->assertSame( 'Welcome! Your friend\'s gift (10 % off) is applied to your cart.', SK::$notices[0]['notice'] );

		// then puts something in the cart
		$_GET = array();
		WC()->cart->items = 1;
		$cart->handle_request();

		$this->assertSame( array( 'freund-anna-4821' ), WC()->cart->applied );
		$this->assertNull( WC()->session->get( Stammkunde_Cart::SESSION_FRIEND ) );
	}

	public function test_an_unknown_referral_code_is_refused_with_a_message() {
		SK::app( array( '/api/woocommerce/v1/referral-codes/GIBTS-NICHT' => array( 404, array( 'error' => 'unknown_code' ) ) ) );

		$_GET = array( 'sk_ref' => 'GIBTS-NICHT' );
		( new Stammkunde_Cart() )->handle_request();

		$this->assertNull( WC()->session->get( Stammkunde_Cart::SESSION_FRIEND ) );
		$this->assertSame( array( 'notice' => 'This invite link is not valid (any more).', 'type' => 'error' ), SK::$notices[0] );
	}
}
