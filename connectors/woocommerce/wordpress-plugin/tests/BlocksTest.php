<?php
/**
 * The Cart and Checkout blocks: Store API endpoint data and the update callback.
 *
 * @package Stammkunde
 */

// phpcs:disable

use Automattic\WooCommerce\StoreApi\Exceptions\RouteException;
use PHPUnit\Framework\TestCase;

final class BlocksTest extends TestCase {

	protected function setUp(): void {
		SK::reset();
		SK::configure();
	}

	private static function fixture( $name ) {
		return json_decode( file_get_contents( __DIR__ . '/fixtures/' . $name ), true );
	}

	public function test_registers_cart_data_and_the_update_callback_under_its_namespace() {
		$blocks = new Stammkunde_Blocks();

		$blocks->register_store_api();

		$data = SK::$store_api['endpoint_data'][0];
		$this->assertSame( array( 'cart', 'stammkunde', ARRAY_A ), array( $data['endpoint'], $data['namespace'], $data['schema_type'] ) );
		$this->assertSame( array_keys( $blocks->cart_schema() ), array_keys( $blocks->cart_data() ) );
		$this->assertSame( 'stammkunde', SK::$store_api['update_callback'][0]['namespace'] );
		$this->assertTrue( is_callable( SK::$store_api['update_callback'][0]['callback'] ) );
	}

	public function test_cart_data_for_a_member() {
		SK::$user_id = 42;
		WC()->cart->contents_total = 52.0;
		WC()->cart->applied = array( 'sk-tier-7qx2' );
		SK::app(
			array(
				'/api/woocommerce/v1/customers/42' => array( 200, self::fixture( 'member-view.json' ) ),
				'/api/woocommerce/v1/cart-points'  => array( 200, array( 'points' => 65 ) ),
			)
		);

		$data = ( new Stammkunde_Blocks() )->cart_data();

		$this->assertSame( 65, $data['points'] );
		$this->assertFalse( $data['estimate'] );
		$this->assertSame( 1200, $data['balance'] );
		$this->assertSame( array( array( 'code' => 'SK-QLS32ZMHPR', 'reward' => 'Gratisversand' ) ), $data['codes'] );
		$this->assertSame( array( array( 'name' => 'Gratisversand', 'points' => 300 ), array( 'name' => '5 € Rabatt', 'points' => 500 ) ), $data['rewards'] );
		$this->assertFalse( $data['pending'] );
	}

	public function test_cart_data_says_when_the_points_are_an_estimate() {
		WC()->cart->contents_total = 25.0;
		WC()->cart->cart_items = array( array( 'product_id' => 33, 'variation_id' => 0, 'line_total' => 25.0, 'line_tax' => 0.0 ) );
		SK::app( array( '/api/woocommerce/v1/cart-points' => array( 200, array( 'points' => 25, 'estimate' => true ) ) ) );

		$data = ( new Stammkunde_Blocks() )->cart_data();

		$this->assertSame( array( 25, true ), array( $data['points'], $data['estimate'] ) );
		$this->assertSame( '33', json_decode( SK::$requests[0]['args']['body'], true )['lines'][0]['product_id'] );
	}

	public function test_cart_data_without_the_app_still_answers() {
		SK::$user_id = 42;
		SK::$http = null;

		$data = ( new Stammkunde_Blocks() )->cart_data();

		$this->assertSame( array( null, null, array(), array() ), array( $data['points'], $data['balance'], $data['codes'], $data['rewards'] ) );
	}

	public function test_redeem_in_the_checkout_applies_the_code_once_it_exists() {
		SK::$user_id = 42;
		SK::$coupons['sk-qls32zmhpr'] = 31;
		SK::app( array( '/api/woocommerce/v1/customers/42/redemptions' => array( 201, self::fixture( 'redemption-created.json' ) ) ) );

		( new Stammkunde_Blocks() )->update( array( 'action' => 'redeem', 'reward' => 'Gratisversand', 'key' => '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8' ) );

		$this->assertSame( array( 'sk-qls32zmhpr' ), WC()->cart->applied );
	}

	public function test_redeem_in_the_checkout_waits_and_check_applies_later() {
		SK::$user_id = 42;
		SK::app( array( '/api/woocommerce/v1/customers/42/redemptions' => array( 201, self::fixture( 'redemption-pending.json' ) ) ) );
		$blocks = new Stammkunde_Blocks();
		$blocks->update( array( 'action' => 'redeem', 'reward' => 'Gratisversand', 'key' => '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8' ) );
		$this->assertTrue( $blocks->cart_data()['pending'] );

		SK::$coupons['sk-qls32zmhpr'] = 31;
		SK::app( array( '/api/woocommerce/v1/customers/42/redemptions/1' => array( 200, self::fixture( 'redemption-created.json' ) ) ) );
		$blocks->update( array( 'action' => 'check' ) );

		$this->assertSame( array( 'sk-qls32zmhpr' ), WC()->cart->applied );
	}

	public function test_refusals_reach_the_block_as_route_errors() {
		SK::$user_id = 42;
		SK::app(
			array(
				'/api/woocommerce/v1/customers/42'             => array( 200, self::fixture( 'member-view.json' ) ),
				'/api/woocommerce/v1/customers/42/redemptions' => array( 422, array( 'error' => 'not_enough_points', 'message' => 'Sie haben nicht genug Punkte.' ) ),
			)
		);
		SK::$coupons['sk-qls32zmhpr'] = 31;
		WC()->cart->refuse['sk-qls32zmhpr'] = 'Sorry, this coupon is not applicable to your cart contents.';
		$blocks = new Stammkunde_Blocks();

		$this->assertRouteError( 'stammkunde_refused', 'Sie haben nicht genug Punkte.', function () use ( $blocks ) {
			$blocks->update( array( 'action' => 'redeem', 'reward' => '5 € Rabatt', 'key' => '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8' ) );
		} );
		$this->assertRouteError( 'stammkunde_not_yours', 'This code is not one of your rewards.', function () use ( $blocks ) {
			$blocks->update( array( 'action' => 'apply', 'code' => 'someone-elses' ) );
		} );
		$this->assertRouteError( 'stammkunde_coupon_refused', 'Sorry, this coupon is not applicable to your cart contents.', function () use ( $blocks ) {
			$blocks->update( array( 'action' => 'apply', 'code' => 'SK-QLS32ZMHPR' ) );
		} );
		SK::$user_id = 0;
		$this->assertRouteError( 'stammkunde_login_required', 'Please log in to use your points.', function () use ( $blocks ) {
			$blocks->update( array( 'action' => 'apply', 'code' => 'SK-QLS32ZMHPR' ) );
		} );
	}

	public function test_the_script_is_loaded_only_with_the_cart_or_checkout_block() {
		$blocks = new Stammkunde_Blocks();
		$blocks->enqueue();
		$this->assertSame( array(), SK::$scripts );

		SK::$blocks = array( 'woocommerce/checkout' );
		$blocks->enqueue();

		$this->assertSame( array( 'wc-blocks-checkout', 'wp-plugins', 'wp-element' ), SK::$scripts['stammkunde-blocks']['deps'] );
		$this->assertSame( 'stammkundeBlocks', SK::$scripts['stammkunde-blocks']['l10n'][0] );
	}

	private function assertRouteError( $code, $message, callable $call ) {
		try {
			$call();
			$this->fail( 'no RouteException' );
		} catch ( RouteException $error ) {
			$this->assertSame( array( $code, $message ), array( $error->error_code, $error->getMessage() ) );
		}
	}
}
